//! The Wiki.js client behind the [`Wiki`] trait (a Wiki.js 3 backend could
//! implement it later), and its 2.5 GraphQL implementation [`GraphqlWiki`].
//!
//! Rules from `shared/wikijs.md` §1.3: variables are declared with exactly
//! the schema's types (`$tags: [String]!` for create, `[String]` for
//! update); `create`/`update` select only `page { id }` (the returned object
//! is the raw row: computed fields such as `locale` error after the write);
//! updates always send the full field set (Wiki.js resets omitted fields);
//! every `responseResult` is checked and a failure is an error with its
//! code; network errors and 5xx are retried with backoff, except where a
//! retry could duplicate a create (the caller re-checks by path instead).
//! Writes are serialized by the caller (one sync at a time, one write at a
//! time).

use std::future::Future;
use std::time::Duration;

use agent_runtime::http_client::{self, BaseUrl, HttpError};
use agent_runtime::Secret;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::Method;
use serde_json::{json, Value};

/// A Wiki.js failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WikiError {
    /// No HTTP answer (after retries).
    #[error("Wiki.js unreachable: {0}")]
    Unreachable(String),
    /// 5xx other than a key problem (after retries).
    #[error("Wiki.js server error: {0}")]
    Server(String),
    /// The key was refused or treated as Guest.
    #[error("Wiki.js refused the API key: {0}")]
    Auth(String),
    /// A mutation's `responseResult` said `succeeded: false`.
    #[error("{op} failed: {slug} ({code}): {message}{hint}")]
    Failed {
        /// The operation (`pages.create docs/a`).
        op: String,
        /// `errorCode`.
        code: i64,
        /// `slug`.
        slug: String,
        /// `message`.
        message: String,
        /// What to do about it.
        hint: String,
    },
    /// The request was refused as invalid (HTTP 400), a client bug.
    #[error("Wiki.js rejected the request as invalid: {0}")]
    Invalid(String),
    /// An answer that does not fit the API.
    #[error("unexpected answer from Wiki.js: {0}")]
    Protocol(String),
}

impl WikiError {
    /// The Wiki.js error code, if the error carries one.
    pub fn code(&self) -> Option<i64> {
        match self {
            WikiError::Failed { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether retrying later may help.
    pub fn transient(&self) -> bool {
        matches!(self, WikiError::Unreachable(_) | WikiError::Server(_))
    }
}

/// What to do about each documented error code.
fn hint(code: i64, slug: &str) -> String {
    let h = match code {
        6002 => "a page already exists at this path; the integration does not take over pages it did not create",
        6003 => "the page no longer exists (deleted in the wiki); it will be recreated on the next full sync",
        6004 => "the document is empty after conversion",
        6005 => "the path has '.', a space, '\\' or '//'; set wiki_path in the front matter",
        6006 => "the destination path is taken by another page; rename the document or move that page",
        6007..=6013 => "the API key's group lacks page permissions; use a full-access key",
        2001..=2004 => "asset operation refused; check the asset folder and upload limits",
        1 if slug == "TypeError" => "Wiki.js threw an internal error (usually a missing field)",
        _ => "",
    };
    if h.is_empty() {
        String::new()
    } else {
        format!(" ({h})")
    }
}

/// The fields of a page the integration writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageInput {
    /// Path without locale.
    pub path: String,
    /// Locale.
    pub locale: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Markdown.
    pub content: String,
    /// Lower-cased tags.
    pub tags: Vec<String>,
    /// `isPublished`.
    pub published: bool,
    /// `isPrivate`.
    pub private: bool,
}

/// A page as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Id.
    pub id: i64,
    /// Path.
    pub path: String,
    /// Locale.
    pub locale: String,
}

/// A Wiki.js backend.
pub trait Wiki: Send + Sync + 'static {
    /// Every page (`pages.list` without limit).
    fn list(&self) -> impl Future<Output = Result<Vec<Listed>, WikiError>> + Send;
    /// The page at a path, if any.
    fn by_path(
        &self,
        path: &str,
        locale: &str,
    ) -> impl Future<Output = Result<Option<Listed>, WikiError>> + Send;
    /// A page's writable fields, if it exists.
    fn get(&self, id: i64) -> impl Future<Output = Result<Option<PageInput>, WikiError>> + Send;
    /// Creates a page; returns its id. Not retried on network errors.
    fn create(&self, page: &PageInput) -> impl Future<Output = Result<i64, WikiError>> + Send;
    /// Replaces every field of page `id`.
    fn update(
        &self,
        id: i64,
        page: &PageInput,
    ) -> impl Future<Output = Result<(), WikiError>> + Send;
    /// Moves page `id` (history kept).
    fn move_to(
        &self,
        id: i64,
        path: &str,
        locale: &str,
    ) -> impl Future<Output = Result<(), WikiError>> + Send;
    /// Deletes page `id`.
    fn delete(&self, id: i64) -> impl Future<Output = Result<(), WikiError>> + Send;
    /// Asset folders under `parent` (0 = root): `(id, slug)`.
    fn folders(
        &self,
        parent: i64,
    ) -> impl Future<Output = Result<Vec<(i64, String)>, WikiError>> + Send;
    /// Creates an asset folder (Wiki.js returns no id: list again).
    fn create_folder(
        &self,
        parent: i64,
        slug: &str,
    ) -> impl Future<Output = Result<(), WikiError>> + Send;
    /// Assets in a folder: `(id, filename)`.
    fn assets(
        &self,
        folder: i64,
    ) -> impl Future<Output = Result<Vec<(i64, String)>, WikiError>> + Send;
    /// Deletes an asset by id.
    fn delete_asset(&self, id: i64) -> impl Future<Output = Result<(), WikiError>> + Send;
    /// Uploads (or overwrites) a file in a folder.
    fn upload(
        &self,
        folder: i64,
        name: &str,
        mime: &str,
        data: Vec<u8>,
    ) -> impl Future<Output = Result<(), WikiError>> + Send;
}

/// Wiki.js 2.5 over GraphQL (and `POST /u` for uploads).
#[derive(Debug, Clone)]
pub struct GraphqlWiki {
    base: BaseUrl,
    key: Secret,
    timeout: Duration,
    /// Delays between retries.
    pub backoff: Vec<Duration>,
}

const RESULT: &str = "responseResult { succeeded errorCode slug message }";

/// `pages.create` exactly as the schema declares it.
pub const CREATE: &str = "mutation ($content: String!, $description: String!, $editor: String!, $isPublished: Boolean!, $isPrivate: Boolean!, $locale: String!, $path: String!, $tags: [String]!, $title: String!) { pages { create(content: $content, description: $description, editor: $editor, isPublished: $isPublished, isPrivate: $isPrivate, locale: $locale, path: $path, tags: $tags, title: $title) { responseResult { succeeded errorCode slug message } page { id } } } }";

/// `pages.update` with the full field set.
pub const UPDATE: &str = "mutation ($id: Int!, $content: String, $description: String, $editor: String, $isPrivate: Boolean, $isPublished: Boolean, $locale: String, $path: String, $publishEndDate: Date, $publishStartDate: Date, $scriptCss: String, $scriptJs: String, $tags: [String], $title: String) { pages { update(id: $id, content: $content, description: $description, editor: $editor, isPrivate: $isPrivate, isPublished: $isPublished, locale: $locale, path: $path, publishEndDate: $publishEndDate, publishStartDate: $publishStartDate, scriptCss: $scriptCss, scriptJs: $scriptJs, tags: $tags, title: $title) { responseResult { succeeded errorCode slug message } } } }";

impl GraphqlWiki {
    /// A client.
    pub fn new(base: BaseUrl, key: Secret, timeout: Duration) -> Self {
        Self {
            base,
            key,
            timeout,
            backoff: vec![
                Duration::from_millis(200),
                Duration::from_millis(800),
                Duration::from_secs(2),
            ],
        }
    }

    async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        retry: bool,
    ) -> Result<http_client::Response, WikiError> {
        let headers = [
            (CONTENT_TYPE, content_type.to_string()),
            (
                AUTHORIZATION,
                format!("Bearer {}", self.key.expose().trim()),
            ),
        ];
        let mut attempt = 0;
        loop {
            let result = http_client::send(
                &self.base,
                Method::POST,
                path,
                &headers,
                Some(body.clone()),
                self.timeout,
            )
            .await;
            let err = match result {
                Ok(resp) if resp.status >= 500 => {
                    let msg = resp
                        .json()
                        .and_then(|b| first_error(&b))
                        .unwrap_or_else(|| format!("HTTP {}", resp.status));
                    if msg.contains("API Key is invalid") || msg.contains("API is disabled") {
                        return Err(WikiError::Auth(msg));
                    }
                    WikiError::Server(format!("HTTP {}: {msg}", resp.status))
                }
                Ok(resp) => return Ok(resp),
                Err(e @ HttpError::BadHeader { .. }) => {
                    return Err(WikiError::Auth(format!(
                        "{e}: the key has characters not allowed in a header"
                    )))
                }
                // A connection that never opened sent nothing: always safe.
                Err(e @ (HttpError::Connect { .. } | HttpError::Resolve { .. })) => {
                    WikiError::Unreachable(e.to_string())
                }
                Err(e) if retry => WikiError::Unreachable(e.to_string()),
                Err(e) => return Err(WikiError::Unreachable(e.to_string())),
            };
            let Some(delay) = self.backoff.get(attempt) else {
                return Err(err);
            };
            if !retry && matches!(err, WikiError::Server(_)) {
                return Err(err);
            }
            tracing::debug!(error = %err, attempt, "Wiki.js request failed; retrying");
            tokio::time::sleep(*delay).await;
            attempt += 1;
        }
    }

    /// Runs a GraphQL operation; returns `data`. GraphQL errors become
    /// errors except when `allow_errors` (queries whose "not found" is an
    /// error with null data).
    async fn gql(
        &self,
        query: &str,
        variables: Value,
        retry: bool,
    ) -> Result<(Value, Option<String>), WikiError> {
        let body = serde_json::to_vec(&json!({"query": query, "variables": variables}))
            .map_err(|e| WikiError::Protocol(format!("cannot encode the request: {e}")))?;
        let resp = self
            .post("/graphql", "application/json", body, retry)
            .await?;
        let Some(json) = resp.json() else {
            return Err(WikiError::Protocol(format!(
                "HTTP {} with a non-JSON body from {}/graphql",
                resp.status,
                self.base.as_str()
            )));
        };
        let error = first_error(&json);
        match resp.status {
            200 => {}
            400 => {
                return Err(WikiError::Invalid(
                    error.unwrap_or_else(|| "HTTP 400".into()),
                ))
            }
            413 => return Err(WikiError::Invalid(
                "request entity too large (the page is over Wiki.js's body limit, 5 MB by default)"
                    .into(),
            )),
            s => {
                return Err(WikiError::Protocol(format!(
                    "HTTP {s}: {}",
                    error.unwrap_or_default()
                )))
            }
        }
        if error.as_deref() == Some("Forbidden") {
            return Err(WikiError::Auth(
                "Forbidden: the request was treated as Guest (invalid key) or the key lacks the permission".into(),
            ));
        }
        Ok((json.get("data").cloned().unwrap_or(Value::Null), error))
    }

    async fn mutate(
        &self,
        op: String,
        query: &str,
        variables: Value,
        pointer: &str,
        retry: bool,
    ) -> Result<Value, WikiError> {
        let (data, error) = self.gql(query, variables, retry).await?;
        let node = data.pointer(pointer).cloned().unwrap_or(Value::Null);
        let Some(result) = node.get("responseResult").filter(|r| !r.is_null()) else {
            return Err(WikiError::Protocol(format!(
                "{op}: no responseResult{}",
                error.map(|e| format!(" ({e})")).unwrap_or_default()
            )));
        };
        if result.get("succeeded") == Some(&Value::Bool(true)) {
            return Ok(node);
        }
        let code = result.get("errorCode").and_then(Value::as_i64).unwrap_or(0);
        let slug = result
            .get("slug")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        Err(WikiError::Failed {
            op,
            code,
            hint: hint(code, &slug),
            slug,
            message: result
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        })
    }

    fn page_vars(page: &PageInput) -> serde_json::Map<String, Value> {
        let v = json!({
            "content": page.content,
            "description": page.description,
            "editor": "markdown",
            "isPublished": page.published,
            "isPrivate": page.private,
            "locale": page.locale,
            "path": page.path,
            "tags": page.tags,
            "title": page.title,
        });
        match v {
            Value::Object(m) => m,
            _ => serde_json::Map::new(),
        }
    }
}

fn first_error(body: &Value) -> Option<String> {
    body.get("errors")?
        .as_array()?
        .first()?
        .get("message")?
        .as_str()
        .map(str::to_string)
}

fn listed(v: &Value) -> Option<Listed> {
    Some(Listed {
        id: v.get("id")?.as_i64()?,
        path: v.get("path")?.as_str()?.to_string(),
        locale: v.get("locale")?.as_str()?.to_string(),
    })
}

impl Wiki for GraphqlWiki {
    async fn list(&self) -> Result<Vec<Listed>, WikiError> {
        let (data, error) = self
            .gql(
                "{ pages { list(orderBy: ID) { id path locale } } }",
                json!({}),
                true,
            )
            .await?;
        let items = data
            .pointer("/pages/list")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                WikiError::Protocol(format!(
                    "pages.list: {}",
                    error.unwrap_or_else(|| "no list".into())
                ))
            })?;
        items
            .iter()
            .map(|i| listed(i).ok_or_else(|| WikiError::Protocol(format!("pages.list item {i}"))))
            .collect()
    }

    async fn by_path(&self, path: &str, locale: &str) -> Result<Option<Listed>, WikiError> {
        let q = "query ($path: String!, $locale: String!) { pages { singleByPath(path: $path, locale: $locale) { id path locale } } }";
        let (data, error) = self
            .gql(q, json!({"path": path, "locale": locale}), true)
            .await?;
        match data.pointer("/pages/singleByPath") {
            Some(v) if !v.is_null() => Ok(listed(v)),
            _ if error.as_deref() == Some("This page does not exist.") => Ok(None),
            _ => Err(WikiError::Protocol(format!(
                "pages.singleByPath: {}",
                error.unwrap_or_default()
            ))),
        }
    }

    async fn get(&self, id: i64) -> Result<Option<PageInput>, WikiError> {
        let q = "query ($id: Int!) { pages { single(id: $id) { id path locale title description content isPublished isPrivate tags { tag } } } }";
        let (data, error) = self.gql(q, json!({"id": id}), true).await?;
        let Some(p) = data.pointer("/pages/single").filter(|v| !v.is_null()) else {
            if error.as_deref() == Some("This page does not exist.") {
                return Ok(None);
            }
            return Err(WikiError::Protocol(format!(
                "pages.single: {}",
                error.unwrap_or_default()
            )));
        };
        let s = |k: &str| {
            p.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Ok(Some(PageInput {
            path: s("path"),
            locale: s("locale"),
            title: s("title"),
            description: s("description"),
            content: s("content"),
            tags: p
                .get("tags")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.get("tag").and_then(Value::as_str).map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            published: p
                .get("isPublished")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            private: p.get("isPrivate").and_then(Value::as_bool).unwrap_or(false),
        }))
    }

    async fn create(&self, page: &PageInput) -> Result<i64, WikiError> {
        let vars = Value::Object(Self::page_vars(page));
        let node = self
            .mutate(
                format!("pages.create {}", page.path),
                CREATE,
                vars,
                "/pages/create",
                false,
            )
            .await?;
        node.pointer("/page/id")
            .and_then(Value::as_i64)
            .ok_or_else(|| {
                WikiError::Protocol(format!(
                    "pages.create {}: succeeded without a page id",
                    page.path
                ))
            })
    }

    async fn update(&self, id: i64, page: &PageInput) -> Result<(), WikiError> {
        let mut vars = Self::page_vars(page);
        vars.insert("id".into(), json!(id));
        vars.insert("publishStartDate".into(), json!(""));
        vars.insert("publishEndDate".into(), json!(""));
        vars.insert("scriptCss".into(), json!(""));
        vars.insert("scriptJs".into(), json!(""));
        self.mutate(
            format!("pages.update {} (id {id})", page.path),
            UPDATE,
            Value::Object(vars),
            "/pages/update",
            true,
        )
        .await
        .map(|_| ())
    }

    async fn move_to(&self, id: i64, path: &str, locale: &str) -> Result<(), WikiError> {
        let q = format!("mutation ($id: Int!, $destinationPath: String!, $destinationLocale: String!) {{ pages {{ move(id: $id, destinationPath: $destinationPath, destinationLocale: $destinationLocale) {{ {RESULT} }} }} }}");
        self.mutate(
            format!("pages.move id {id} → {path}"),
            &q,
            json!({"id": id, "destinationPath": path, "destinationLocale": locale}),
            "/pages/move",
            true,
        )
        .await
        .map(|_| ())
    }

    async fn delete(&self, id: i64) -> Result<(), WikiError> {
        let q = format!("mutation ($id: Int!) {{ pages {{ delete(id: $id) {{ {RESULT} }} }} }}");
        self.mutate(
            format!("pages.delete id {id}"),
            &q,
            json!({"id": id}),
            "/pages/delete",
            true,
        )
        .await
        .map(|_| ())
    }

    async fn folders(&self, parent: i64) -> Result<Vec<(i64, String)>, WikiError> {
        let q = "query ($parentFolderId: Int!) { assets { folders(parentFolderId: $parentFolderId) { id slug } } }";
        let (data, error) = self.gql(q, json!({"parentFolderId": parent}), true).await?;
        let items = data
            .pointer("/assets/folders")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                WikiError::Protocol(format!("assets.folders: {}", error.unwrap_or_default()))
            })?;
        Ok(items
            .iter()
            .filter_map(|f| Some((f.get("id")?.as_i64()?, f.get("slug")?.as_str()?.to_string())))
            .collect())
    }

    async fn create_folder(&self, parent: i64, slug: &str) -> Result<(), WikiError> {
        let q = format!("mutation ($parentFolderId: Int!, $slug: String!, $name: String) {{ assets {{ createFolder(parentFolderId: $parentFolderId, slug: $slug, name: $name) {{ {RESULT} }} }} }}");
        self.mutate(
            format!("assets.createFolder {slug}"),
            &q,
            json!({"parentFolderId": parent, "slug": slug, "name": slug}),
            "/assets/createFolder",
            true,
        )
        .await
        .map(|_| ())
    }

    async fn assets(&self, folder: i64) -> Result<Vec<(i64, String)>, WikiError> {
        let q = "query ($folderId: Int!, $kind: AssetKind!) { assets { list(folderId: $folderId, kind: $kind) { id filename } } }";
        let (data, error) = self
            .gql(q, json!({"folderId": folder, "kind": "ALL"}), true)
            .await?;
        let items = data
            .pointer("/assets/list")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                WikiError::Protocol(format!("assets.list: {}", error.unwrap_or_default()))
            })?;
        Ok(items
            .iter()
            .filter_map(|a| {
                Some((
                    a.get("id")?.as_i64()?,
                    a.get("filename")?.as_str()?.to_string(),
                ))
            })
            .collect())
    }

    async fn delete_asset(&self, id: i64) -> Result<(), WikiError> {
        let q =
            format!("mutation ($id: Int!) {{ assets {{ deleteAsset(id: $id) {{ {RESULT} }} }} }}");
        self.mutate(
            format!("assets.deleteAsset id {id}"),
            &q,
            json!({"id": id}),
            "/assets/deleteAsset",
            true,
        )
        .await
        .map(|_| ())
    }

    async fn upload(
        &self,
        folder: i64,
        name: &str,
        mime: &str,
        data: Vec<u8>,
    ) -> Result<(), WikiError> {
        let boundary = format!("wikijs-integration-{:016x}", rand::random::<u64>());
        let mut body = Vec::with_capacity(data.len() + 512);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"mediaUpload\"\r\n\r\n{{\"folderId\":{folder}}}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"mediaUpload\"; filename=\"{}\"\r\nContent-Type: {mime}\r\n\r\n",
                name.replace('"', "_")
            )
            .as_bytes(),
        );
        body.extend_from_slice(&data);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let resp = self
            .post(
                "/u",
                &format!("multipart/form-data; boundary={boundary}"),
                body,
                true,
            )
            .await?;
        match resp.status {
            200 => Ok(()),
            403 => Err(WikiError::Auth("upload refused (403): the key cannot upload files".into())),
            413 => Err(WikiError::Invalid(format!("{name} is larger than Wiki.js's upload limit (uploads.maxFileSize, 5 MiB by default)"))),
            s => Err(WikiError::Protocol(format!(
                "upload of {name}: HTTP {s} {}",
                String::from_utf8_lossy(&resp.body).chars().take(200).collect::<String>()
            ))),
        }
    }
}

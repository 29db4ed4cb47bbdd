//! One sync run: repository snapshot → converted pages → plan → writes,
//! one at a time, each followed by its database record.
//!
//! Invariants:
//! - Only pages whose id the database holds (the integration created or
//!   adopted them after its own interrupted create) are updated, moved or
//!   deleted. A page made in the wiki at a wanted path is a *conflict*: it
//!   is reported and left alone.
//! - Before a create the row is marked `creating`; if the process dies
//!   after Wiki.js wrote the page, the next run finds the page at the path
//!   and adopts it instead of reporting a conflict or creating a duplicate.
//! - A page is written only when its content hash differs from the stored
//!   one, so a no-change run costs no write (every update adds a history
//!   version in Wiki.js).
//! - `last_commit` is stored only after a run that reached its end, so an
//!   interrupted run is diffed again from the old commit: nothing is lost.
//! - Renames come from the local diff `last_commit..head` (exact and
//!   similar); without a known `last_commit` (first run, force push) the
//!   run is a full reconcile: the wiki's page list is read, renames are
//!   found by identical blob ids, and pages of ours deleted in the wiki are
//!   recreated.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::client::{PageInput, Wiki, WikiError};
use crate::config::OnDelete;
use crate::convert::{self, Page, Site};
use crate::git::{self, Change, Source};
use crate::store::{DocRow, Store, StoreError};

/// Settings of the sync.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Wiki path prefix.
    pub prefix: String,
    /// Page locale.
    pub locale: String,
    /// Asset folder slug path.
    pub asset_root: String,
    /// Deletions.
    pub on_delete: OnDelete,
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The repository.
    #[error(transparent)]
    Git(#[from] git::GitError),
    /// Wiki.js as a whole (unreachable, key refused).
    #[error(transparent)]
    Wiki(#[from] WikiError),
    /// The database.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Shutdown.
    #[error("cancelled")]
    Cancelled,
}

/// What a run did (or would do in a dry run).
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Commit synced.
    pub commit: String,
    /// Whether it was a full reconcile.
    pub full: bool,
    /// Plan lines (`create docs/a from a.md`, …), in order.
    pub plan: Vec<String>,
    /// Page creates, updates, moves, deletes (or unpublishes), uploads.
    pub created: u64,
    /// Updates.
    pub updated: u64,
    /// Moves.
    pub moved: u64,
    /// Deletes or unpublishes.
    pub deleted: u64,
    /// Asset uploads.
    pub uploaded: u64,
    /// Assets deleted (their file left the repository).
    pub deleted_assets: u64,
    /// Documents unchanged.
    pub unchanged: u64,
    /// Per-document errors and conflicts.
    pub problems: Vec<String>,
    /// Links to missing documents: `(source, target)`.
    pub missing_links: Vec<(String, String)>,
    /// Planned only, nothing written.
    pub dry_run: bool,
    /// Nothing to do: the head was synced already and every document is
    /// settled (no repository read beyond the head, no Wiki.js request).
    pub up_to_date: bool,
}

impl Report {
    /// Writes made.
    pub fn writes(&self) -> u64 {
        self.created
            + self.updated
            + self.moved
            + self.deleted
            + self.uploaded
            + self.deleted_assets
    }
}

/// The sync engine.
pub struct Engine<W: Wiki> {
    /// Wiki.js.
    pub wiki: W,
    /// The repository.
    pub source: Arc<Source>,
    /// The state database.
    pub store: Arc<Store>,
    /// Settings.
    pub settings: Settings,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

fn mime_of(name: &str) -> &'static str {
    let ext = name.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "webp" => "image/webp",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

fn input(p: &Page, locale: &str) -> PageInput {
    PageInput {
        path: p.wiki_path.clone(),
        locale: locale.to_string(),
        title: p.title.clone(),
        description: p.description.clone(),
        content: p.content.clone(),
        tags: p.tags.clone(),
        published: p.published,
        private: p.private,
    }
}

impl<W: Wiki> Engine<W> {
    /// Runs one sync. `force_full` reconciles against the wiki even when the
    /// last commit is known. `dry_run` plans without writing anything.
    pub async fn run(
        &self,
        force_full: bool,
        dry_run: bool,
        cancelled: impl Fn() -> bool,
    ) -> Result<Report, SyncError> {
        let source = Arc::clone(&self.source);
        let head = blocking(move || source.update()).await?;
        let store = Arc::clone(&self.store);
        let last = blocking(move || store.get("last_commit")).await?;
        let store = Arc::clone(&self.store);
        let rows: BTreeMap<String, DocRow> = blocking(move || store.docs())
            .await?
            .into_iter()
            .map(|r| (r.source_path.clone(), r))
            .collect();
        let all_settled = rows
            .values()
            .all(|r| r.state == "synced" || r.state == "unpublished");
        let mut report = Report {
            commit: head.clone(),
            dry_run,
            ..Report::default()
        };
        if !force_full && last.as_deref() == Some(head.as_str()) && all_settled {
            report.up_to_date = true;
            return Ok(report);
        }
        // Snapshot, texts and (when possible) the local change set.
        let source = Arc::clone(&self.source);
        let (head_c, last_c) = (head.clone(), last.clone());
        let (snapshot, texts, changes) = blocking(move || -> Result<_, git::GitError> {
            let snapshot = source.snapshot(&head_c)?;
            let mut texts = BTreeMap::new();
            for (path, blob) in &snapshot {
                if convert::is_markdown(path) {
                    texts.insert(
                        path.clone(),
                        String::from_utf8_lossy(&source.read(blob)?).into_owned(),
                    );
                }
            }
            let changes = match last_c {
                Some(l) if source.has_commit(&l) => Some(source.diff(&l, &head_c)?),
                _ => None,
            };
            Ok((snapshot, texts, changes))
        })
        .await?;
        let full = force_full || changes.is_none();
        report.full = full;

        // The site: every document's wiki path (front matter may override)
        // and every other file's asset URL.
        let mut site = Site {
            prefix: self.settings.prefix.clone(),
            ..Site::default()
        };
        let mut path_errors: BTreeMap<String, String> = BTreeMap::new();
        for (path, text) in &texts {
            let target = convert::front_matter(text)
                .and_then(|(fm, _)| convert::target_path(&self.settings.prefix, path, &fm));
            match target {
                Ok(w) => {
                    site.docs.insert(path.clone(), w);
                }
                Err(e) => {
                    path_errors.insert(path.clone(), e);
                }
            }
        }
        let mut assets: BTreeMap<String, (Vec<String>, String)> = BTreeMap::new();
        for path in snapshot.keys() {
            if convert::is_markdown(path) || path.split('/').any(|s| s.starts_with('.')) {
                continue;
            }
            match convert::asset_location(&self.settings.asset_root, path) {
                Ok((folders, name)) => {
                    site.assets
                        .insert(path.clone(), format!("{}/{name}", folders.join("/")));
                    assets.insert(path.clone(), (folders, name));
                }
                Err(e) => report.problems.push(format!("{path}: {e}")),
            }
        }
        for c in convert::collisions(&site.docs) {
            report.problems.push(c.clone());
            for src in site
                .docs
                .iter()
                .filter(|(_, w)| c.contains(&format!("\"{w}\"")))
                .map(|(s, _)| s.clone())
                .collect::<Vec<_>>()
            {
                path_errors.insert(src, c.clone());
            }
        }
        for src in path_errors.keys() {
            site.docs.remove(src);
        }
        let mut pages: BTreeMap<String, Page> = BTreeMap::new();
        for (path, text) in &texts {
            if path_errors.contains_key(path) {
                continue;
            }
            match site.convert(path, text) {
                Ok(p) => {
                    for m in &p.missing {
                        report.missing_links.push((path.clone(), m.clone()));
                    }
                    pages.insert(path.clone(), p);
                }
                Err(e) => {
                    path_errors.insert(path.clone(), e);
                }
            }
        }

        // Renames: local diff, or identical blobs on a full reconcile.
        let mut renames: Vec<(String, String)> = Vec::new();
        match &changes {
            Some(changes) => {
                for c in changes {
                    if let Change::Renamed { from, to } = c {
                        if convert::is_markdown(from)
                            && rows.get(from).is_some_and(|r| r.page_id.is_some())
                            && !rows.contains_key(to)
                        {
                            renames.push((from.clone(), to.clone()));
                        }
                    }
                }
            }
            None => {
                let vanished: Vec<&DocRow> = rows
                    .values()
                    .filter(|r| !snapshot.contains_key(&r.source_path) && r.page_id.is_some())
                    .collect();
                for r in vanished {
                    let candidate = snapshot.iter().find(|(p, b)| {
                        convert::is_markdown(p)
                            && !rows.contains_key(*p)
                            && Some(*b) == r.blob_id.as_ref()
                            && !renames.iter().any(|(_, t)| t == *p)
                    });
                    if let Some((to, _)) = candidate {
                        renames.push((r.source_path.clone(), to.clone()));
                    }
                }
            }
        }

        // A full reconcile reads the wiki's page list once.
        let listing: Option<HashMap<(String, String), i64>> = if full {
            Some(
                self.wiki
                    .list()
                    .await?
                    .into_iter()
                    .map(|l| ((l.path, l.locale), l.id))
                    .collect(),
            )
        } else {
            None
        };
        let listed_ids: Option<BTreeSet<i64>> =
            listing.as_ref().map(|l| l.values().copied().collect());

        let mut rows = rows;
        let locale = self.settings.locale.clone();

        // 1. Deletions (documents gone and not renamed).
        let renamed_from: BTreeSet<&String> = renames.iter().map(|(f, _)| f).collect();
        let gone: Vec<DocRow> = rows
            .values()
            .filter(|r| {
                !snapshot.contains_key(&r.source_path) && !renamed_from.contains(&r.source_path)
            })
            .cloned()
            .collect();
        for r in gone {
            if cancelled() {
                return Err(SyncError::Cancelled);
            }
            let Some(id) = r.page_id else {
                report
                    .plan
                    .push(format!("forget {} (never published)", r.source_path));
                if !dry_run {
                    self.db(move |s| s.remove_doc(&r.source_path)).await?;
                }
                continue;
            };
            if r.state == "unpublished" {
                continue;
            }
            match self.settings.on_delete {
                OnDelete::Delete => {
                    report.plan.push(format!(
                        "delete {} (page {id}) for removed {}",
                        r.wiki_path, r.source_path
                    ));
                    if dry_run {
                        continue;
                    }
                    match self.wiki.delete(id).await {
                        Ok(()) | Err(WikiError::Failed { code: 6003, .. }) => {
                            report.deleted += 1;
                            let src = r.source_path.clone();
                            self.db(move |s| s.remove_doc(&src)).await?;
                        }
                        Err(e) => self.fail(&mut report, r.clone(), e).await?,
                    }
                }
                OnDelete::Unpublish => {
                    report.plan.push(format!(
                        "unpublish {} (page {id}) for removed {}",
                        r.wiki_path, r.source_path
                    ));
                    if dry_run {
                        continue;
                    }
                    let result = match self.wiki.get(id).await {
                        Ok(Some(mut p)) => {
                            p.published = false;
                            self.wiki.update(id, &p).await
                        }
                        Ok(None) => Ok(()),
                        Err(e) => Err(e),
                    };
                    match result {
                        Ok(()) => {
                            report.deleted += 1;
                            let mut row = r.clone();
                            row.state = "unpublished".into();
                            row.last_error = None;
                            self.db(move |s| s.put_doc(&row)).await?;
                        }
                        Err(e) => self.fail(&mut report, r.clone(), e).await?,
                    }
                }
            }
        }

        // 2. Renames → moves (the row follows the file).
        for (from, to) in &renames {
            let Some(old) = rows.remove(from) else {
                continue;
            };
            let (Some(id), Some(page)) = (old.page_id, pages.get(to)) else {
                rows.insert(from.clone(), old);
                continue;
            };
            let mut row = old.clone();
            row.source_path = to.clone();
            if page.wiki_path != old.wiki_path {
                report.plan.push(format!(
                    "move {} → {} (page {id}) for {from} → {to}",
                    old.wiki_path, page.wiki_path
                ));
                if !dry_run {
                    if cancelled() {
                        return Err(SyncError::Cancelled);
                    }
                    match self.wiki.move_to(id, &page.wiki_path, &locale).await {
                        Ok(()) => {
                            report.moved += 1;
                            row.wiki_path = page.wiki_path.clone();
                        }
                        Err(e) => {
                            let what = e.to_string();
                            if !e.transient() && !matches!(e, WikiError::Auth(_)) {
                                report.problems.push(format!("{to}: {what}"));
                                row.state = "conflict".into();
                                row.last_error = Some(what);
                                let (f, r2) = (from.clone(), row.clone());
                                self.db(move |s| {
                                    s.remove_doc(&f)?;
                                    s.put_doc(&r2)
                                })
                                .await?;
                                rows.insert(to.clone(), row);
                                continue;
                            }
                            return Err(e.into());
                        }
                    }
                }
            }
            if !dry_run {
                let (f, r2) = (from.clone(), row.clone());
                self.db(move |s| {
                    s.remove_doc(&f)?;
                    s.put_doc(&r2)
                })
                .await?;
            }
            rows.insert(to.clone(), row);
        }

        // 3. Assets first, so pages that show them render complete.
        let mut folder_ids: HashMap<String, i64> = HashMap::new();
        for (path, (folders, name)) in &assets {
            let blob = snapshot.get(path).cloned().unwrap_or_default();
            let p = path.clone();
            let known = self.db(move |s| s.asset_hash(&p)).await?;
            if known.as_deref() == Some(blob.as_str()) {
                continue;
            }
            let url = format!("{}/{name}", folders.join("/"));
            report.plan.push(format!("upload {path} → /{url}"));
            if dry_run {
                continue;
            }
            if cancelled() {
                return Err(SyncError::Cancelled);
            }
            let folder = self.ensure_folders(folders, &mut folder_ids).await?;
            let source = Arc::clone(&self.source);
            let b = blob.clone();
            let data = blocking(move || source.read(&b)).await?;
            match self.wiki.upload(folder, name, mime_of(name), data).await {
                Ok(()) => {
                    report.uploaded += 1;
                    let (p, u, b) = (path.clone(), url.clone(), blob.clone());
                    self.db(move |s| s.put_asset(&p, &u, &b)).await?;
                }
                Err(e) if e.transient() || matches!(e, WikiError::Auth(_)) => return Err(e.into()),
                Err(e) => report.problems.push(format!("{path}: {e}")),
            }
        }
        // Assets we uploaded whose file left the repository: found by
        // folder and name (Wiki.js deletes assets only by id), deleted.
        let known_assets = self.db(|s| s.assets()).await?;
        for (src, url) in known_assets {
            if assets.contains_key(&src) {
                continue;
            }
            report
                .plan
                .push(format!("delete asset /{url} for removed {src}"));
            if dry_run {
                continue;
            }
            let (folder_path, name) = url.rsplit_once('/').unwrap_or(("", url.as_str()));
            let folders: Vec<String> = folder_path
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            let result = match self.find_folder(&folders).await? {
                Some(folder) => {
                    let id = self
                        .wiki
                        .assets(folder)
                        .await?
                        .into_iter()
                        .find(|(_, n)| n == name)
                        .map(|(id, _)| id);
                    match id {
                        Some(id) => self.wiki.delete_asset(id).await,
                        None => Ok(()),
                    }
                }
                None => Ok(()),
            };
            match result {
                Ok(()) => {
                    report.deleted_assets += 1;
                    self.db(move |s| s.remove_asset(&src)).await?;
                }
                Err(e) if e.transient() || matches!(e, WikiError::Auth(_)) => return Err(e.into()),
                Err(e) => report.problems.push(format!("{src}: {e}")),
            }
        }

        // 4. Documents that cannot be converted.
        for (src, e) in &path_errors {
            report.problems.push(format!("{src}: {e}"));
            if dry_run {
                continue;
            }
            let mut row = rows.get(src).cloned().unwrap_or(DocRow {
                source_path: src.clone(),
                wiki_path: String::new(),
                page_id: None,
                content_hash: None,
                blob_id: None,
                state: "error".into(),
                last_error: None,
                attempts: 0,
            });
            row.state = "error".into();
            row.last_error = Some(e.clone());
            row.attempts += 1;
            self.db(move |s| s.put_doc(&row)).await?;
        }

        // 5. Creates and updates.
        for (src, page) in &pages {
            if cancelled() {
                return Err(SyncError::Cancelled);
            }
            let hash = page.hash();
            let blob = snapshot.get(src).cloned();
            let row = rows.get(src).cloned();
            let page_gone = match (&row, &listed_ids) {
                (
                    Some(DocRow {
                        page_id: Some(id), ..
                    }),
                    Some(ids),
                ) => !ids.contains(id),
                _ => false,
            };
            match row {
                Some(r) if r.page_id.is_some() && !page_gone => {
                    let id = r.page_id.unwrap_or_default();
                    if r.content_hash.as_deref() == Some(hash.as_str())
                        && r.wiki_path == page.wiki_path
                        && r.state == "synced"
                    {
                        report.unchanged += 1;
                        continue;
                    }
                    if r.content_hash.as_deref() == Some(hash.as_str())
                        && r.wiki_path == page.wiki_path
                        && r.state == "unpublished"
                    {
                        report.unchanged += 1;
                        continue;
                    }
                    report
                        .plan
                        .push(format!("update {} (page {id}) from {src}", page.wiki_path));
                    if dry_run {
                        continue;
                    }
                    // An update with another path also moves the page.
                    match self.wiki.update(id, &input(page, &locale)).await {
                        Ok(()) => {
                            report.updated += 1;
                            self.synced(r, page, hash, blob).await?;
                        }
                        Err(WikiError::Failed {
                            code: 1,
                            ref message,
                            ..
                        }) if message == "Invalid Page Id" => {
                            // Deleted in the wiki meanwhile: recreate.
                            let mut row = r.clone();
                            row.page_id = None;
                            self.create(&mut report, row, src, page, hash, blob, &listing)
                                .await?;
                        }
                        Err(e) => self.fail(&mut report, r, e).await?,
                    }
                }
                other => {
                    let mut row = other.unwrap_or(DocRow {
                        source_path: src.clone(),
                        wiki_path: page.wiki_path.clone(),
                        page_id: None,
                        content_hash: None,
                        blob_id: None,
                        state: "pending".into(),
                        last_error: None,
                        attempts: 0,
                    });
                    if page_gone {
                        report.problems.push(format!(
                            "{src}: page {} was deleted in the wiki; recreating it",
                            row.page_id.unwrap_or_default()
                        ));
                        row.page_id = None;
                        row.state = "pending".into();
                    }
                    self.create(&mut report, row, src, page, hash, blob, &listing)
                        .await?;
                }
            }
        }

        if !dry_run {
            let store = Arc::clone(&self.store);
            let h = head.clone();
            blocking(move || store.set("last_commit", &h)).await?;
        }
        Ok(report)
    }

    #[allow(clippy::too_many_arguments)]
    async fn create(
        &self,
        report: &mut Report,
        mut row: DocRow,
        src: &str,
        page: &Page,
        hash: String,
        blob: Option<String>,
        listing: &Option<HashMap<(String, String), i64>>,
    ) -> Result<(), SyncError> {
        let locale = self.settings.locale.clone();
        let existing = match listing {
            Some(l) => l.get(&(page.wiki_path.clone(), locale.clone())).copied(),
            None => self
                .wiki
                .by_path(&page.wiki_path, &locale)
                .await?
                .map(|l| l.id),
        };
        if let Some(id) = existing {
            if row.state == "creating" && row.wiki_path == page.wiki_path {
                // Our own create from an interrupted run: adopt and update.
                report.plan.push(format!(
                    "adopt {} (page {id}, created by an interrupted run) from {src}",
                    page.wiki_path
                ));
                if report.dry_run {
                    return Ok(());
                }
                return match self.wiki.update(id, &input(page, &locale)).await {
                    Ok(()) => {
                        report.updated += 1;
                        row.page_id = Some(id);
                        self.synced(row, page, hash, blob).await
                    }
                    Err(e) => self.fail(report, row, e).await,
                };
            }
            let msg = format!(
                "a page the integration did not create exists at {} (page {id}); it is left alone: delete or move it in the wiki, or set wiki_path in {src}",
                page.wiki_path
            );
            report
                .plan
                .push(format!("conflict {} from {src}", page.wiki_path));
            report.problems.push(format!("{src}: {msg}"));
            row.state = "conflict".into();
            row.wiki_path = page.wiki_path.clone();
            row.last_error = Some(msg);
            if !report.dry_run {
                self.db(move |s| s.put_doc(&row)).await?;
            }
            return Ok(());
        }
        report
            .plan
            .push(format!("create {} from {src}", page.wiki_path));
        if report.dry_run {
            return Ok(());
        }
        row.state = "creating".into();
        row.wiki_path = page.wiki_path.clone();
        let marked = row.clone();
        self.db(move |s| s.put_doc(&marked)).await?;
        match self.wiki.create(&input(page, &locale)).await {
            Ok(id) => {
                report.created += 1;
                row.page_id = Some(id);
                self.synced(row, page, hash, blob).await
            }
            Err(e) => self.fail(report, row, e).await,
        }
    }

    async fn synced(
        &self,
        mut row: DocRow,
        page: &Page,
        hash: String,
        blob: Option<String>,
    ) -> Result<(), SyncError> {
        row.wiki_path = page.wiki_path.clone();
        row.content_hash = Some(hash);
        row.blob_id = blob;
        row.state = "synced".into();
        row.last_error = None;
        row.attempts = 0;
        self.db(move |s| s.put_doc(&row)).await
    }

    /// A per-document failure: recorded; a failure of Wiki.js as a whole
    /// (unreachable, key refused) stops the run.
    async fn fail(
        &self,
        report: &mut Report,
        mut row: DocRow,
        e: WikiError,
    ) -> Result<(), SyncError> {
        let msg = e.to_string();
        let keep_state = row.state == "creating";
        row.last_error = Some(msg.clone());
        row.attempts += 1;
        if !keep_state || !e.transient() {
            row.state = if e.code() == Some(6002) || e.code() == Some(6006) {
                "conflict"
            } else {
                "error"
            }
            .into();
        }
        self.db(move |s| s.put_doc(&row)).await?;
        if e.transient() || matches!(e, WikiError::Auth(_)) {
            return Err(e.into());
        }
        report.problems.push(msg);
        Ok(())
    }

    /// The id of an existing asset folder path, without creating it.
    async fn find_folder(&self, folders: &[String]) -> Result<Option<i64>, SyncError> {
        let mut parent = 0i64;
        for slug in folders {
            match self
                .wiki
                .folders(parent)
                .await?
                .into_iter()
                .find(|(_, s)| s == slug)
            {
                Some((id, _)) => parent = id,
                None => return Ok(None),
            }
        }
        Ok(Some(parent))
    }

    async fn ensure_folders(
        &self,
        folders: &[String],
        cache: &mut HashMap<String, i64>,
    ) -> Result<i64, SyncError> {
        let mut parent = 0i64;
        let mut path = String::new();
        for slug in folders {
            path = if path.is_empty() {
                slug.clone()
            } else {
                format!("{path}/{slug}")
            };
            if let Some(id) = cache.get(&path) {
                parent = *id;
                continue;
            }
            let mut found = self
                .wiki
                .folders(parent)
                .await?
                .into_iter()
                .find(|(_, s)| s == slug)
                .map(|(id, _)| id);
            if found.is_none() {
                self.wiki.create_folder(parent, slug).await?;
                found = self
                    .wiki
                    .folders(parent)
                    .await?
                    .into_iter()
                    .find(|(_, s)| s == slug)
                    .map(|(id, _)| id);
            }
            let Some(id) = found else {
                return Err(WikiError::Protocol(format!(
                    "asset folder {path} was created but is not listed"
                ))
                .into());
            };
            cache.insert(path.clone(), id);
            parent = id;
        }
        Ok(parent)
    }

    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, SyncError> {
        let store = Arc::clone(&self.store);
        Ok(blocking(move || f(&store)).await?)
    }
}

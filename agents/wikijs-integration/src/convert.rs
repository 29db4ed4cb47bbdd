//! Markdown document → Wiki.js page: front matter, title, wiki path, link
//! and image rewriting. Pure functions, no I/O.
//!
//! Path rules (see `shared/wikijs.md` §1.3 #6): each segment is lower-cased,
//! every character that is not a letter or digit (Unicode letters are kept),
//! `-` or `_` becomes `-`, runs of `-` collapse and `-` is trimmed at the
//! ends, so `v1.2 Notes.md` → `v1-2-notes`. `README.md`/`index.md` map to
//! their folder's page (the repository root's to the prefix itself). With an
//! empty prefix the first segment may not look like a locale (`de`,
//! `pt-br`), be one character long, or be one of the routes Wiki.js reserves
//! (`login`, `logout`, `register`, `verify`, `favicons`, `fonts`, `img`,
//! `js`, `svg`, plus `a`, `t`, `e`, `h`, `s`, `p`, `u` as one-character
//! segments).

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

/// Files treated as documents.
pub fn is_markdown(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.ends_with(".md") || lower.ends_with(".markdown")
}

const RESERVED: &[&str] = &[
    "login", "logout", "register", "verify", "favicons", "fonts", "img", "js", "svg",
];

/// One path segment as Wiki.js accepts and routes it.
pub fn slug_segment(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().flat_map(char::to_lowercase) {
        let c = if c.is_alphanumeric() || c == '_' || c == '-' {
            c
        } else {
            '-'
        };
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(c);
    }
    out.trim_end_matches('-').to_string()
}

/// Checks a full wiki path against what Wiki.js accepts (6005) and routes.
pub fn check_wiki_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("the wiki path is empty".into());
    }
    if path.contains('.') || path.contains(' ') || path.contains('\\') || path.contains("//") {
        return Err(format!(
            "wiki path \"{path}\" contains '.', a space, '\\' or '//' (Wiki.js refuses it: PageIllegalPath)"
        ));
    }
    if let Some(bad) = path
        .chars()
        .find(|c| !(c.is_alphanumeric() || *c == '-' || *c == '_' || *c == '/') || c.is_uppercase())
    {
        return Err(format!(
            "wiki path \"{path}\" contains '{bad}', which the Wiki.js router drops or treats as URL syntax"
        ));
    }
    let first = path.split('/').next().unwrap_or_default();
    let locale_like = {
        let b = first.as_bytes();
        (b.len() == 2 && b.iter().all(u8::is_ascii_lowercase))
            || (b.len() == 5
                && b[2] == b'-'
                && [0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_lowercase()))
    };
    if locale_like || first.chars().count() == 1 || RESERVED.contains(&first) {
        return Err(format!(
            "wiki path \"{path}\" starts with \"{first}\", which the Wiki.js router reserves (a locale, a one-character route or a system route); set wikijs.prefix or another wiki_path"
        ));
    }
    Ok(())
}

/// Joins `prefix` and a relative wiki path.
fn join(prefix: &str, rest: &str) -> String {
    match (prefix.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}/{rest}"),
    }
}

/// The wiki path of a document at `rel` (relative to the docs folder).
pub fn wiki_path_for(prefix: &str, rel: &str) -> Result<String, String> {
    let prefix = prefix.trim_matches('/');
    let mut segments: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
    let Some(file) = segments.pop() else {
        return Err("empty document path".into());
    };
    let stem = file.rfind('.').map_or(file, |i| &file[..i]);
    let mut slugs: Vec<String> = Vec::new();
    for s in &segments {
        let slug = slug_segment(s);
        if slug.is_empty() {
            return Err(format!("folder \"{s}\" has no letters or digits to make a wiki path from; rename it or set wiki_path in the front matter"));
        }
        slugs.push(slug);
    }
    let lower = stem.to_lowercase();
    if lower != "readme" && lower != "index" {
        let slug = slug_segment(stem);
        if slug.is_empty() {
            return Err(format!("file name \"{file}\" has no letters or digits to make a wiki path from; rename it or set wiki_path in the front matter"));
        }
        slugs.push(slug);
    }
    let path = join(prefix, &slugs.join("/"));
    if path.is_empty() {
        return Err(format!(
            "\"{rel}\" would be the wiki's home page; set wikijs.prefix or wiki_path in its front matter"
        ));
    }
    check_wiki_path(&path)?;
    Ok(path)
}

/// Front matter fields the integration reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrontMatter {
    /// `title`.
    pub title: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `tags`: a YAML list or a comma-separated string.
    pub tags: Vec<String>,
    /// `published` (default true).
    pub published: Option<bool>,
    /// `private` (default false).
    pub private: Option<bool>,
    /// `wiki_path`: relative to the prefix, or absolute with a leading `/`.
    pub wiki_path: Option<String>,
}

/// Splits YAML front matter (`---` … `---`/`...` at the very top) from the
/// body. Unknown keys are ignored (other tools use them).
pub fn front_matter(text: &str) -> Result<(FrontMatter, &str), String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let Some(rest) = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))
    else {
        return Ok((FrontMatter::default(), text));
    };
    let mut offset = 0;
    let mut end = None;
    for line in rest.split_inclusive('\n') {
        let t = line.trim_end();
        if t == "---" || t == "..." {
            end = Some((offset, offset + line.len()));
            break;
        }
        offset += line.len();
    }
    let Some((yaml_end, body_start)) = end else {
        return Err("front matter starts with '---' but has no closing '---' line".into());
    };
    let yaml = &rest[..yaml_end];
    let body = &rest[body_start..];
    let value: serde_yaml::Value = if yaml.trim().is_empty() {
        serde_yaml::Value::Null
    } else {
        serde_yaml::from_str(yaml).map_err(|e| format!("front matter is not valid YAML: {e}"))?
    };
    let mut fm = FrontMatter::default();
    let Some(map) = value.as_mapping() else {
        if value.is_null() {
            return Ok((fm, body));
        }
        return Err("front matter must be a YAML mapping (key: value lines)".into());
    };
    let get = |k: &str| map.get(serde_yaml::Value::String(k.into()));
    let string = |k: &str| -> Result<Option<String>, String> {
        match get(k) {
            None | Some(serde_yaml::Value::Null) => Ok(None),
            Some(serde_yaml::Value::String(s)) => Ok(Some(s.clone())),
            Some(serde_yaml::Value::Number(n)) => Ok(Some(n.to_string())),
            Some(serde_yaml::Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(format!("front matter `{k}` must be a string")),
        }
    };
    let boolean = |k: &str| -> Result<Option<bool>, String> {
        match get(k) {
            None | Some(serde_yaml::Value::Null) => Ok(None),
            Some(serde_yaml::Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(format!("front matter `{k}` must be true or false")),
        }
    };
    fm.title = string("title")?;
    fm.description = string("description")?;
    fm.wiki_path = string("wiki_path")?;
    fm.published = boolean("published")?;
    fm.private = boolean("private")?;
    fm.tags = match get("tags") {
        None | Some(serde_yaml::Value::Null) => Vec::new(),
        Some(serde_yaml::Value::String(s)) => s.split(',').map(str::to_string).collect(),
        Some(serde_yaml::Value::Sequence(items)) => items
            .iter()
            .map(|i| match i {
                serde_yaml::Value::String(s) => Ok(s.clone()),
                serde_yaml::Value::Number(n) => Ok(n.to_string()),
                _ => Err(
                    "front matter `tags` must be a list of strings or a comma-separated string"
                        .to_string(),
                ),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(
                "front matter `tags` must be a list of strings or a comma-separated string".into(),
            )
        }
    };
    // Wiki.js stores tags trimmed and lower-cased; do the same so the
    // content hash and the wiki agree.
    let mut seen = BTreeSet::new();
    fm.tags = fm
        .tags
        .iter()
        .map(|t| t.trim().to_lowercase())
        .filter(|t| !t.is_empty() && seen.insert(t.clone()))
        .collect();
    Ok((fm, body))
}

/// Everything the conversion needs to know about the other files.
#[derive(Debug, Default, Clone)]
pub struct Site {
    /// Wiki path prefix.
    pub prefix: String,
    /// Documents: path relative to the docs folder → wiki path.
    pub docs: BTreeMap<String, String>,
    /// Other files: path relative to the docs folder → URL path of the asset.
    pub assets: BTreeMap<String, String>,
}

/// A converted document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Wiki path.
    pub wiki_path: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Tags.
    pub tags: Vec<String>,
    /// `isPublished`.
    pub published: bool,
    /// `isPrivate`.
    pub private: bool,
    /// Markdown with rewritten links.
    pub content: String,
    /// Links to documents or files that do not exist (as written).
    pub missing: Vec<String>,
}

impl Page {
    /// SHA-256 over every field sent to Wiki.js: equal hashes mean the page
    /// would not change, so no write (and no history version) is needed.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            self.wiki_path.as_str(),
            self.title.as_str(),
            self.description.as_str(),
            &self.tags.join("\u{1f}"),
            if self.published { "1" } else { "0" },
            if self.private { "1" } else { "0" },
            self.content.as_str(),
        ] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        hex::encode(h.finalize())
    }
}

/// The wiki path a document will have: its `wiki_path` override or the
/// mapped path.
pub fn target_path(prefix: &str, rel: &str, fm: &FrontMatter) -> Result<String, String> {
    match &fm.wiki_path {
        Some(p) => {
            let path = if let Some(abs) = p.strip_prefix('/') {
                abs.trim_matches('/').to_string()
            } else {
                join(prefix.trim_matches('/'), p.trim_matches('/'))
            };
            check_wiki_path(&path).map_err(|e| format!("front matter wiki_path: {e}"))?;
            Ok(path)
        }
        None => wiki_path_for(prefix, rel),
    }
}

/// Resolves `target` relative to the directory of `from` (both relative to
/// the docs folder); `None` when it leaves the docs folder.
fn resolve(from: &str, target: &str) -> Option<String> {
    let mut parts: Vec<&str> = from.split('/').collect();
    parts.pop();
    for seg in target.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    Some(parts.join("/"))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Site {
    /// Rewrites one link target found in document `from`; `Err` holds the
    /// target when it points at nothing in the docs folder.
    fn rewrite(&self, from: &str, target: &str) -> Result<Option<String>, ()> {
        let t = target.trim();
        if t.is_empty()
            || t.starts_with('#')
            || t.starts_with('/')
            || t.starts_with("//")
            || t.contains("://")
            || t.starts_with("mailto:")
            || t.starts_with("tel:")
            || t.starts_with("data:")
        {
            return Ok(None);
        }
        let (path_part, fragment) = match t.find(['#', '?']) {
            Some(i) => (&t[..i], &t[i..]),
            None => (t, ""),
        };
        let decoded = percent_decode(path_part);
        let Some(resolved) = resolve(from, &decoded) else {
            return Err(());
        };
        let fragment = if fragment.starts_with('?') {
            ""
        } else {
            fragment
        };
        if let Some(wiki) = self.docs.get(&resolved) {
            return Ok(Some(format!("/{wiki}{fragment}")));
        }
        if let Some(url) = self.assets.get(&resolved) {
            return Ok(Some(format!("/{url}")));
        }
        // A folder link: its README.md or index.md.
        let dir = resolved.trim_end_matches('/');
        for index in ["README.md", "readme.md", "index.md", "Readme.md"] {
            let candidate = if dir.is_empty() {
                index.to_string()
            } else {
                format!("{dir}/{index}")
            };
            if let Some(wiki) = self.docs.get(&candidate) {
                return Ok(Some(format!("/{wiki}{fragment}")));
            }
        }
        Err(())
    }

    /// Converts document `rel` with text `text`.
    pub fn convert(&self, rel: &str, text: &str) -> Result<Page, String> {
        let (fm, body) = front_matter(text)?;
        let wiki_path = target_path(&self.prefix, rel, &fm)?;
        let mut missing = Vec::new();
        let content = self.rewrite_links(rel, body, &mut missing);
        let title = fm
            .title
            .clone()
            .filter(|t| !t.trim().is_empty())
            .or_else(|| first_heading(body))
            .unwrap_or_else(|| {
                let file = rel.rsplit('/').next().unwrap_or(rel);
                let stem = file.rfind('.').map_or(file, |i| &file[..i]);
                if matches!(stem.to_lowercase().as_str(), "readme" | "index") {
                    rel.rsplit('/').nth(1).unwrap_or(stem).to_string()
                } else {
                    stem.to_string()
                }
            });
        let content = if content.trim().is_empty() {
            // Wiki.js refuses empty content (6004): publish the title.
            format!("# {title}\n")
        } else {
            content
        };
        Ok(Page {
            wiki_path,
            title: title.trim().to_string(),
            description: fm.description.unwrap_or_default(),
            tags: fm.tags,
            published: fm.published.unwrap_or(true),
            private: fm.private.unwrap_or(false),
            content,
            missing,
        })
    }

    /// Rewrites inline links/images `[x](target "t")` and reference
    /// definitions `[id]: target` outside fenced code and inline code.
    fn rewrite_links(&self, rel: &str, body: &str, missing: &mut Vec<String>) -> String {
        let mut out = String::with_capacity(body.len());
        let mut fence: Option<String> = None;
        for line in body.split_inclusive('\n') {
            let trimmed = line.trim_start();
            let marker: String = trimmed
                .chars()
                .take_while(|c| *c == '`' || *c == '~')
                .collect();
            if marker.len() >= 3
                && (marker.chars().all(|c| c == '`') || marker.chars().all(|c| c == '~'))
            {
                match &fence {
                    None => fence = Some(marker),
                    Some(open) if marker.starts_with(open.as_str()) && trimmed.trim() == marker => {
                        fence = None
                    }
                    Some(_) => {}
                }
                out.push_str(line);
                continue;
            }
            if fence.is_some() {
                out.push_str(line);
                continue;
            }
            // Reference definition.
            if let Some(rest) = trimmed.strip_prefix('[') {
                if let Some(close) = rest.find("]:") {
                    let after = &rest[close + 2..];
                    let target = after.split_whitespace().next().unwrap_or("");
                    let target_clean = target.trim_start_matches('<').trim_end_matches('>');
                    match self.rewrite(rel, target_clean) {
                        Ok(Some(new)) => {
                            let indent = &line[..line.len() - trimmed.len()];
                            let pos = after.find(target).unwrap_or(0);
                            out.push_str(indent);
                            out.push('[');
                            out.push_str(&rest[..close + 2]);
                            out.push_str(&after[..pos]);
                            out.push_str(&new);
                            out.push_str(&after[pos + target.len()..]);
                            continue;
                        }
                        Ok(None) => {}
                        Err(()) => missing.push(target_clean.to_string()),
                    }
                    out.push_str(line);
                    continue;
                }
            }
            out.push_str(&self.rewrite_inline(rel, line, missing));
        }
        out
    }

    fn rewrite_inline(&self, rel: &str, line: &str, missing: &mut Vec<String>) -> String {
        let mut out = String::with_capacity(line.len());
        let mut rest = line;
        loop {
            // Skip inline code spans.
            let next_code = rest.find('`');
            let next_link = rest.find("](");
            match (next_code, next_link) {
                (Some(c), Some(l)) if c < l => {
                    let ticks = rest[c..].chars().take_while(|ch| *ch == '`').count();
                    let closer = "`".repeat(ticks);
                    let after = &rest[c + ticks..];
                    match after.find(&closer) {
                        Some(e) => {
                            let end = c + ticks + e + ticks;
                            out.push_str(&rest[..end]);
                            rest = &rest[end..];
                        }
                        None => {
                            out.push_str(rest);
                            return out;
                        }
                    }
                }
                (_, Some(l)) => {
                    let start = l + 2;
                    let inner = &rest[start..];
                    // The target ends at the matching ')' (balanced parens)
                    // or at a space before a title.
                    let mut depth = 0usize;
                    let mut end = None;
                    for (i, ch) in inner.char_indices() {
                        match ch {
                            '(' => depth += 1,
                            ')' if depth == 0 => {
                                end = Some(i);
                                break;
                            }
                            ')' => depth -= 1,
                            _ => {}
                        }
                    }
                    let Some(end) = end else {
                        out.push_str(rest);
                        return out;
                    };
                    let whole = &inner[..end];
                    let (target, tail) = if let Some(t) = whole.strip_prefix('<') {
                        match t.find('>') {
                            Some(g) => (&t[..g], &t[g + 1..]),
                            None => (whole, ""),
                        }
                    } else {
                        match whole.find(char::is_whitespace) {
                            Some(s) => (&whole[..s], &whole[s..]),
                            None => (whole, ""),
                        }
                    };
                    out.push_str(&rest[..start]);
                    match self.rewrite(rel, target) {
                        Ok(Some(new)) => {
                            out.push_str(&new);
                            out.push_str(tail);
                        }
                        Ok(None) => out.push_str(whole),
                        Err(()) => {
                            missing.push(target.to_string());
                            out.push_str(whole);
                        }
                    }
                    out.push(')');
                    rest = &inner[end + 1..];
                }
                (_, None) => {
                    out.push_str(rest);
                    return out;
                }
            }
        }
    }
}

/// The text of the first `# ` heading (ATX level 1) outside code fences.
pub fn first_heading(body: &str) -> Option<String> {
    let mut in_fence = false;
    for line in body.lines() {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        if let Some(h) = t.strip_prefix("# ") {
            let h = h.trim().trim_end_matches('#').trim();
            if !h.is_empty() {
                return Some(h.to_string());
            }
        }
    }
    None
}

/// Wiki.js's upload file-name normalization (lower-case; whitespace, `,`,
/// `;`, `#` → `_`; `sanitize-filename`), so links can name the stored file.
pub fn asset_file_name(name: &str) -> String {
    name.to_lowercase()
        .chars()
        .map(|c| {
            if c.is_whitespace() || ",;#".contains(c) {
                '_'
            } else {
                c
            }
        })
        .filter(|c| !"/?<>\\:*|\"".contains(*c) && !c.is_control())
        .collect()
}

/// Where an asset at `rel` (relative to the docs folder) goes: the folder
/// slugs under `root` and the stored file name.
pub fn asset_location(root: &str, rel: &str) -> Result<(Vec<String>, String), String> {
    let mut segs: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
    let file = segs.pop().ok_or_else(|| "empty asset path".to_string())?;
    let mut folders: Vec<String> = root
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    for s in segs {
        let slug = slug_segment(s);
        if slug.is_empty() {
            return Err(format!(
                "folder \"{s}\" of asset \"{rel}\" has no letters or digits"
            ));
        }
        folders.push(slug);
    }
    let name = asset_file_name(file);
    if name.is_empty() || name.starts_with('.') {
        return Err(format!("asset \"{rel}\" has no usable file name"));
    }
    Ok((folders, name))
}

/// Two documents mapping to one wiki path: the error names both files.
pub fn collisions(paths: &BTreeMap<String, String>) -> Vec<String> {
    let mut by_wiki: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (src, wiki) in paths {
        by_wiki.entry(wiki.as_str()).or_default().push(src.as_str());
    }
    by_wiki
        .into_iter()
        .filter(|(_, srcs)| srcs.len() > 1)
        .map(|(wiki, srcs)| {
            format!(
                "{} map to the same wiki path \"{wiki}\"; rename one or set wiki_path in its front matter",
                srcs.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(" and ")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_slugified() {
        assert_eq!(
            wiki_path_for("docs", "guide/v1.2-notes.md").unwrap(),
            "docs/guide/v1-2-notes"
        );
        assert_eq!(
            wiki_path_for("docs", "My Guide/Install Steps.md").unwrap(),
            "docs/my-guide/install-steps"
        );
        assert_eq!(wiki_path_for("docs", "README.md").unwrap(), "docs");
        assert_eq!(wiki_path_for("docs", "sub/index.md").unwrap(), "docs/sub");
        assert_eq!(
            wiki_path_for("docs", "Über Straße.md").unwrap(),
            "docs/über-straße"
        );
        assert_eq!(wiki_path_for("", "guide/a.md").unwrap(), "guide/a");
        assert!(wiki_path_for("", "README.md")
            .unwrap_err()
            .contains("home page"));
        assert!(wiki_path_for("", "de/a.md")
            .unwrap_err()
            .contains("reserves"));
        assert!(wiki_path_for("", "login/a.md").is_err());
        assert!(wiki_path_for("docs", "sub/....md").is_err());
    }

    #[test]
    fn front_matter_fields() {
        let (fm, body) = front_matter(
            "---\ntitle: Hello\ndescription: d\ntags: [A, ' b ', a]\npublished: false\nprivate: true\nwiki_path: x/y\nauthor: me\n---\n# H\n",
        )
        .unwrap();
        assert_eq!(fm.title.as_deref(), Some("Hello"));
        assert_eq!(fm.tags, vec!["a", "b"]);
        assert_eq!(fm.published, Some(false));
        assert_eq!(fm.private, Some(true));
        assert_eq!(fm.wiki_path.as_deref(), Some("x/y"));
        assert_eq!(body, "# H\n");
        let (fm, _) = front_matter("---\ntags: one, Two\n---\n").unwrap();
        assert_eq!(fm.tags, vec!["one", "two"]);
        assert!(front_matter("---\ntitle: [\n---\n")
            .unwrap_err()
            .contains("YAML"));
        assert!(front_matter("---\npublished: maybe\n---\n")
            .unwrap_err()
            .contains("published"));
        assert!(front_matter("---\ntitle: x\n")
            .unwrap_err()
            .contains("closing"));
        let (fm, body) = front_matter("no front matter").unwrap();
        assert_eq!(fm, FrontMatter::default());
        assert_eq!(body, "no front matter");
    }

    fn site() -> Site {
        let mut s = Site {
            prefix: "docs".into(),
            ..Site::default()
        };
        for p in [
            "README.md",
            "guide/install.md",
            "guide/README.md",
            "ref/api v2.md",
        ] {
            s.docs.insert(p.into(), wiki_path_for("docs", p).unwrap());
        }
        s.assets.insert(
            "guide/img/Shot 1.PNG".into(),
            "docs/guide/img/shot_1.png".into(),
        );
        s
    }

    #[test]
    fn links_are_rewritten_and_missing_ones_reported() {
        let text = "# Install\n\nSee [the guide](./README.md#top), [api](../ref/api%20v2.md), [home](../README.md), [dir](.) and [gone](missing.md).\n![shot](img/Shot%201.PNG \"a shot\")\n\n```\n[code](README.md)\n```\n`[x](README.md)` [ext](https://e.com/a.md) [anchor](#x)\n\n[ref]: ../ref/api%20v2.md\n";
        let page = site().convert("guide/install.md", text).unwrap();
        assert_eq!(page.title, "Install");
        assert_eq!(page.wiki_path, "docs/guide/install");
        assert!(
            page.content.contains("[the guide](/docs/guide#top)"),
            "{}",
            page.content
        );
        assert!(
            page.content.contains("[api](/docs/ref/api-v2)"),
            "{}",
            page.content
        );
        assert!(page.content.contains("[home](/docs)"), "{}", page.content);
        assert!(
            page.content.contains("[dir](/docs/guide)"),
            "{}",
            page.content
        );
        assert!(
            page.content
                .contains("![shot](/docs/guide/img/shot_1.png \"a shot\")"),
            "{}",
            page.content
        );
        assert!(
            page.content.contains("```\n[code](README.md)\n```"),
            "{}",
            page.content
        );
        assert!(
            page.content.contains("`[x](README.md)`"),
            "{}",
            page.content
        );
        assert!(page.content.contains("[ext](https://e.com/a.md)"));
        assert!(
            page.content.contains("[ref]: /docs/ref/api-v2"),
            "{}",
            page.content
        );
        assert_eq!(page.missing, vec!["missing.md"]);
    }

    #[test]
    fn titles_fall_back() {
        let s = site();
        assert_eq!(
            s.convert("guide/install.md", "no heading").unwrap().title,
            "install"
        );
        assert_eq!(s.convert("guide/README.md", "text").unwrap().title, "guide");
        assert_eq!(
            s.convert("guide/install.md", "---\ntitle: T\n---\n# H")
                .unwrap()
                .title,
            "T"
        );
        // Empty content is replaced (Wiki.js refuses it).
        assert_eq!(
            s.convert("guide/install.md", "").unwrap().content,
            "# install\n"
        );
    }

    #[test]
    fn wiki_path_override() {
        let s = site();
        assert_eq!(
            s.convert("a.md", "---\nwiki_path: special/page\n---\nx")
                .unwrap()
                .wiki_path,
            "docs/special/page"
        );
        assert_eq!(
            s.convert("a.md", "---\nwiki_path: /top/page\n---\nx")
                .unwrap()
                .wiki_path,
            "top/page"
        );
        assert!(s
            .convert("a.md", "---\nwiki_path: a.b\n---\nx")
            .unwrap_err()
            .contains("wiki_path"));
    }

    #[test]
    fn collisions_name_both_files() {
        let mut m = BTreeMap::new();
        m.insert("a/README.md".to_string(), "docs/a".to_string());
        m.insert("a.md".to_string(), "docs/a".to_string());
        let c = collisions(&m);
        assert_eq!(c.len(), 1);
        assert!(
            c[0].contains("\"a.md\"") && c[0].contains("\"a/README.md\""),
            "{}",
            c[0]
        );
    }

    #[test]
    fn hash_changes_with_any_field() {
        let p = site().convert("guide/install.md", "# A").unwrap();
        let mut q = p.clone();
        assert_eq!(p.hash(), q.hash());
        q.published = false;
        assert_ne!(p.hash(), q.hash());
    }

    #[test]
    fn assets_are_placed_in_a_mirrored_tree() {
        let (folders, name) = asset_location("docs", "guide/img/Shot 1.PNG").unwrap();
        assert_eq!(folders, vec!["docs", "guide", "img"]);
        assert_eq!(name, "shot_1.png");
    }
}

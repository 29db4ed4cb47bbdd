//! The sync engine against the stateful fake Wiki.js over real HTTP, with
//! real Git repositories (local path source) and a real SQLite file.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers

mod common;

use common::{engine, png, wiki, Repo};
use wikijs_integration::config::OnDelete;

fn base_repo() -> Repo {
    let r = Repo::new();
    r.write(
        "README.md",
        "# Project\n\nCode lives here; docs are in docs/.\n",
    );
    r.write("src/main.rs", "fn main() {}\n");
    r.write(
        "docs/README.md",
        "# Handbook\n\nStart with [install](guide/install.md) and the [notes](v1.2-notes.md).\n",
    );
    r.write(
        "docs/guide/install.md",
        "---\ntitle: Installing\ntags: [Setup, ' Guide ']\ndescription: How to install\n---\n# Install\n\nBack to the [handbook](../README.md). See ![shot](img/Shot%201.png) and [missing](nope.md).\n",
    );
    r.write("docs/guide/img/Shot 1.png", png());
    r.write(
        "docs/v1.2-notes.md",
        "---\ntags: notes, Release\npublished: false\n---\nNo heading here.\n",
    );
    r.commit("initial docs");
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_sync_then_no_change_costs_no_write() {
    let (model, fake) = wiki().await;
    let repo = base_repo();
    let state = tempfile::tempdir().unwrap();
    let e = engine(repo.path(), state.path(), &fake.url(), OnDelete::Delete);

    let r = e.run(false, false, || false).await.unwrap();
    assert!(r.full, "first run is a full reconcile");
    assert_eq!((r.created, r.uploaded), (3, 1), "{r:?}");
    assert_eq!(
        r.missing_links,
        vec![("guide/install.md".to_string(), "nope.md".to_string())]
    );
    let pages = model.pages();
    let paths: Vec<&str> = pages.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        vec!["docs", "docs/guide/install", "docs/v1-2-notes"],
        "{paths:?}"
    );
    let install = &model.pages_at("docs/guide/install")[0];
    assert_eq!(install.title, "Installing");
    assert_eq!(install.tags, vec!["setup", "guide"]);
    assert_eq!(install.description, "How to install");
    assert!(
        install.content.contains("[handbook](/docs)"),
        "{}",
        install.content
    );
    assert!(
        install
            .content
            .contains("![shot](/docs/guide/img/shot_1.png)"),
        "{}",
        install.content
    );
    assert!(install.content.contains("[missing](nope.md)"));
    let notes = &model.pages_at("docs/v1-2-notes")[0];
    assert_eq!(notes.title, "v1.2-notes");
    assert!(!notes.is_published);
    assert_eq!(notes.tags, vec!["notes", "release"]);
    // The handbook links render as valid pages in the wiki.
    let home = &model.pages_at("docs")[0];
    assert!(
        home.content.contains("(/docs/guide/install)"),
        "{}",
        home.content
    );
    // The asset sits in the mirrored folder tree and is served.
    let assets = model.assets();
    assert_eq!(assets.len(), 1);
    assert_eq!(assets[0].0, "docs/guide/img/shot_1.png");
    assert_eq!(assets[0].1.data, png());
    let resp = agent_runtime::http_client::send(
        &agent_runtime::http_client::BaseUrl::parse(&fake.url()).unwrap(),
        hyper::Method::GET,
        "/docs/guide/img/shot_1.png",
        &[],
        None,
        std::time::Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 200);

    let before = model.counts();
    let r = e.run(false, false, || false).await.unwrap();
    assert_eq!(r.writes(), 0, "{r:?}");
    assert_eq!(model.counts().page_writes, before.page_writes);
    assert_eq!(model.counts().uploads, before.uploads);
    // A forced full reconcile reads the list but writes nothing either.
    let r = e.run(true, false, || false).await.unwrap();
    assert_eq!(r.writes(), 0, "{r:?}");
    assert_eq!(r.unchanged, 3);
    assert_eq!(model.counts().page_writes, before.page_writes);
    assert!(fake.unrecorded().is_empty(), "{:?}", fake.unrecorded());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_renames_deletes_and_image_changes() {
    let (model, fake) = wiki().await;
    let repo = base_repo();
    let state = tempfile::tempdir().unwrap();
    let e = engine(repo.path(), state.path(), &fake.url(), OnDelete::Delete);
    e.run(false, false, || false).await.unwrap();
    let install_id = model.pages_at("docs/guide/install")[0].id;
    let notes_id = model.pages_at("docs/v1-2-notes")[0].id;
    let history_before = model.history_len(install_id);

    // Rename (edited a little too), delete, add, edit, change the image.
    repo.git(&["mv", "docs/guide/install.md", "docs/guide/setup.md"]);
    repo.write(
        "docs/guide/setup.md",
        "---\ntitle: Installing\ntags: [Setup, ' Guide ']\ndescription: How to install\n---\n# Install\n\nBack to the [handbook](../README.md). See ![shot](img/Shot%201.png) and [faq](../faq.md).\n",
    );
    repo.git(&["rm", "-q", "docs/v1.2-notes.md"]);
    repo.write("docs/faq.md", "# FAQ\n\nAsk away.\n");
    repo.write(
        "docs/README.md",
        "# Handbook\n\nStart with [setup](guide/setup.md).\n",
    );
    let mut img = png();
    img.extend_from_slice(b"changed");
    repo.write("docs/guide/img/Shot 1.png", &img);
    repo.commit("reorganize");

    let r = e.run(false, false, || false).await.unwrap();
    assert!(!r.full, "a known last commit gives an incremental sync");
    assert_eq!(
        (r.moved, r.deleted, r.created, r.uploaded),
        (1, 1, 1, 1),
        "{r:?}"
    );
    // The moved page keeps its id (history kept) and got the new content.
    let setup = &model.pages_at("docs/guide/setup")[0];
    assert_eq!(setup.id, install_id);
    assert!(
        setup.content.contains("[faq](/docs/faq)"),
        "{}",
        setup.content
    );
    assert!(model.history_len(install_id) > history_before);
    assert!(model.pages_at("docs/guide/install").is_empty());
    assert!(model.pages().iter().all(|p| p.id != notes_id), "deleted");
    assert_eq!(model.assets()[0].1.data, img, "image re-uploaded");
    // The image leaves the repository: its asset is deleted.
    repo.git(&["rm", "-q", "docs/guide/img/Shot 1.png"]);
    repo.commit("drop image");
    let r2 = e.run(false, false, || false).await.unwrap();
    assert_eq!(r2.deleted_assets, 1, "{r2:?}");
    assert!(model.assets().is_empty());
    assert!(
        r2.missing_links
            .iter()
            .any(|(_, t)| t == "img/Shot%201.png"),
        "{:?}",
        r2.missing_links
    );
    assert!(r.missing_links.is_empty(), "{:?}", r.missing_links);
    let r = e.run(false, false, || false).await.unwrap();
    assert_eq!(r.writes(), 0, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_made_in_the_wiki_are_left_alone() {
    let (model, fake) = wiki().await;
    let repo = base_repo();
    repo.write("docs/team.md", "# Team\n\nFrom Git.\n");
    repo.commit("team");
    let human = model.seed_page("docs/team", "Team (wiki)", "Written by a person.");
    let state = tempfile::tempdir().unwrap();
    let e = engine(repo.path(), state.path(), &fake.url(), OnDelete::Delete);
    let r = e.run(false, false, || false).await.unwrap();
    assert_eq!(r.created, 3);
    assert!(
        r.problems
            .iter()
            .any(|p| p.contains("team.md") && p.contains("did not create")),
        "{:?}",
        r.problems
    );
    let team = model.pages_at("docs/team");
    assert_eq!(team.len(), 1);
    assert_eq!(team[0].id, human);
    assert_eq!(team[0].content, "Written by a person.");
    // Deleting the document later never deletes the person's page.
    repo.git(&["rm", "-q", "docs/team.md"]);
    repo.commit("drop team");
    e.run(false, false, || false).await.unwrap();
    assert_eq!(model.pages_at("docs/team")[0].id, human);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_sync_converges_without_duplicates() {
    let (model, fake) = wiki().await;
    let repo = base_repo();
    for i in 0..10 {
        repo.write(&format!("docs/many/page-{i}.md"), format!("# Page {i}\n"));
    }
    repo.commit("many");
    let state = tempfile::tempdir().unwrap();
    let e = engine(repo.path(), state.path(), &fake.url(), OnDelete::Delete);
    // Wiki.js goes down in the middle of the creates (1 list + 9 asset
    // folder requests come first).
    model.fail_after(13);
    let err = e.run(false, false, || false).await.unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
    let written = model.pages().len();
    assert!(written > 0 && written < 13, "{written}");
    model.recover();
    let r = e.run(false, false, || false).await.unwrap();
    assert_eq!(r.problems, Vec::<String>::new());
    let pages = model.pages();
    assert_eq!(pages.len(), 13);
    let mut paths: Vec<&str> = pages.iter().map(|p| p.path.as_str()).collect();
    paths.sort_unstable();
    paths.dedup();
    assert_eq!(paths.len(), 13, "no duplicates");
    assert_eq!(e.run(false, false, || false).await.unwrap().writes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_answer_was_lost_is_adopted() {
    let (model, fake) = wiki().await;
    let repo = base_repo();
    let state = tempfile::tempdir().unwrap();
    let e = engine(repo.path(), state.path(), &fake.url(), OnDelete::Delete);
    // As if the process died right after Wiki.js wrote the page: the row
    // says `creating`, the page exists.
    e.store
        .put_doc(&wikijs_integration::store::DocRow {
            source_path: "README.md".into(),
            wiki_path: "docs".into(),
            page_id: None,
            content_hash: None,
            blob_id: None,
            state: "creating".into(),
            last_error: None,
            attempts: 0,
        })
        .unwrap();
    let id = model.seed_page("docs", "Handbook", "half-written");
    let r = e.run(false, false, || false).await.unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let home = model.pages_at("docs");
    assert_eq!(home.len(), 1);
    assert_eq!(home[0].id, id);
    assert!(home[0].content.contains("Handbook"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_push_reconciles_and_finds_renames_by_content() {
    let (model, fake) = wiki().await;
    let repo = base_repo();
    let state = tempfile::tempdir().unwrap();
    let e = engine(repo.path(), state.path(), &fake.url(), OnDelete::Delete);
    e.run(false, false, || false).await.unwrap();
    let notes_id = model.pages_at("docs/v1-2-notes")[0].id;
    // Rewrite history: a new root commit where the notes file was renamed.
    repo.git(&["checkout", "-q", "--orphan", "rewritten"]);
    repo.git(&["mv", "docs/v1.2-notes.md", "docs/release-notes.md"]);
    repo.commit("rewritten history");
    repo.git(&["branch", "-q", "-D", "main"]);
    repo.git(&["branch", "-q", "-m", "main"]);
    // Forget the old commit's objects so `before` is really unknown.
    repo.git(&["reflog", "expire", "--expire=now", "--all"]);
    repo.git(&["gc", "-q", "--prune=now"]);
    let r = e.run(false, false, || false).await.unwrap();
    assert!(r.full, "unknown last commit → full reconcile");
    assert_eq!(r.moved, 1, "{r:?}");
    assert_eq!(model.pages_at("docs/release-notes")[0].id, notes_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpublish_instead_of_delete() {
    let (model, fake) = wiki().await;
    let repo = base_repo();
    let state = tempfile::tempdir().unwrap();
    let e = engine(repo.path(), state.path(), &fake.url(), OnDelete::Unpublish);
    e.run(false, false, || false).await.unwrap();
    repo.git(&["rm", "-q", "docs/guide/install.md"]);
    repo.commit("remove install");
    let r = e.run(false, false, || false).await.unwrap();
    assert_eq!(r.deleted, 1);
    let p = &model.pages_at("docs/guide/install")[0];
    assert!(!p.is_published);
    assert_eq!(p.title, "Installing", "full-field update kept the rest");
    assert_eq!(p.tags, vec!["setup", "guide"]);
    assert_eq!(e.run(false, false, || false).await.unwrap().writes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collisions_and_bad_front_matter_are_per_document_errors() {
    let (model, fake) = wiki().await;
    let repo = base_repo();
    repo.write("docs/guide.md", "# Guide page\n");
    repo.write("docs/broken.md", "---\ntitle: [unclosed\n---\n# x\n");
    repo.commit("collide");
    let state = tempfile::tempdir().unwrap();
    let e = engine(repo.path(), state.path(), &fake.url(), OnDelete::Delete);
    // guide.md → docs/guide; nothing else maps there... add the folder page.
    repo.write("docs/guide/index.md", "# Guide index\n");
    repo.commit("index");
    let r = e.run(false, false, || false).await.unwrap();
    let joined = r.problems.join("\n");
    assert!(
        joined.contains("\"guide.md\" and \"guide/index.md\"") && joined.contains("docs/guide"),
        "{joined}"
    );
    assert!(
        joined.contains("broken.md") && joined.contains("YAML"),
        "{joined}"
    );
    assert!(model.pages_at("docs/guide").is_empty());
    let rows = e.store.docs().unwrap();
    let broken = rows.iter().find(|r| r.source_path == "broken.md").unwrap();
    assert_eq!(broken.state, "error");
    // The rest still synced.
    assert_eq!(model.pages_at("docs/guide/install").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_plans_without_writing() {
    let (model, fake) = wiki().await;
    let repo = base_repo();
    let state = tempfile::tempdir().unwrap();
    let e = engine(repo.path(), state.path(), &fake.url(), OnDelete::Delete);
    let r = e.run(false, true, || false).await.unwrap();
    assert!(
        r.plan
            .iter()
            .any(|l| l == "create docs/guide/install from guide/install.md"),
        "{:?}",
        r.plan
    );
    assert!(
        r.plan
            .iter()
            .any(|l| l.starts_with("upload guide/img/Shot 1.png")),
        "{:?}",
        r.plan
    );
    assert_eq!(model.counts().page_writes, 0);
    assert_eq!(model.counts().uploads, 0);
    assert!(e.store.docs().unwrap().is_empty());
    assert_eq!(e.store.get("last_commit").unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_retries_5xx_and_reports_guest_keys() {
    use wikijs_integration::client::{GraphqlWiki, PageInput, Wiki, WikiError};
    let (model, fake) = wiki().await;
    let base = agent_runtime::http_client::BaseUrl::parse(&fake.url()).unwrap();
    let mut client = GraphqlWiki::new(
        base.clone(),
        agent_runtime::Secret::new(common::KEY),
        std::time::Duration::from_secs(5),
    );
    client.backoff = vec![std::time::Duration::from_millis(5); 3];
    // Two 503s, then an answer: retried.
    model.fail_next(2);
    assert!(client.list().await.unwrap().is_empty());
    // More failures than retries: a server error, not a success.
    model.fail_next(10);
    assert!(matches!(client.list().await, Err(WikiError::Server(_))));
    model.recover();
    let page = PageInput {
        path: "docs/a".into(),
        locale: "en".into(),
        title: "A".into(),
        description: String::new(),
        content: "# A".into(),
        tags: vec!["x".into()],
        published: true,
        private: false,
    };
    // A create is never retried after a 5xx (it may have been written).
    model.fail_next(1);
    assert!(matches!(
        client.create(&page).await,
        Err(WikiError::Server(_))
    ));
    let id = client.create(&page).await.unwrap();
    // Errors carry their Wiki.js code and a hint.
    let dup = client.create(&page).await.unwrap_err();
    assert_eq!(dup.code(), Some(6002), "{dup}");
    assert!(dup.to_string().contains("PageDuplicateCreate"), "{dup}");
    let mut bad = page.clone();
    bad.path = "docs/a.b".into();
    assert_eq!(client.create(&bad).await.unwrap_err().code(), Some(6005));
    assert_eq!(
        client
            .move_to(id + 100, "docs/b", "en")
            .await
            .unwrap_err()
            .code(),
        Some(6003)
    );
    // An invalid key is Guest with HTTP 200: writes are refused as Auth.
    let guest = GraphqlWiki::new(
        base,
        agent_runtime::Secret::new("eyJ.not.admin"),
        std::time::Duration::from_secs(5),
    );
    let e = guest.update(id, &page).await.unwrap_err();
    assert!(matches!(e, WikiError::Auth(_)), "{e}");
    assert_eq!(model.counts().updates, 0);
    // Reads still work as Guest (why health needs an admin query).
    assert_eq!(guest.list().await.unwrap().len(), 1);
}

//! The documentation's promises about itself: the README is a front door
//! of at most 200 lines that links every page of `docs/`; every relative
//! link of the README, `docs/` and BENCHMARKS.md reaches a file and, with an
//! `#anchor`, a heading of that file; and `docs/configuration.md`'s table
//! lists exactly the environment variables the binaries read, each with the
//! binaries that read it. No network, no stack.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

/// The most lines the README may have.
const README_MAX_LINES: usize = 200;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The Markdown files whose links are checked, relative to the root.
fn checked_files() -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from("README.md"), PathBuf::from("BENCHMARKS.md")];
    files.extend(docs_pages());
    files
}

/// Every page (Markdown file) in `docs/`, relative to the root, sorted.
/// `docs/openapi.json` is the API's machine-readable description, linked
/// from its page.
fn docs_pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|entry| PathBuf::from("docs").join(entry.expect("a docs/ entry").file_name()))
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    pages
}

/// The lines of a Markdown text outside fenced code blocks.
fn prose_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut fence: Option<&str> = None;
    text.lines().filter(move |line| {
        let trimmed = line.trim_start();
        for marker in ["```", "~~~"] {
            if trimmed.starts_with(marker) {
                match fence {
                    None => fence = Some(marker),
                    Some(open) if open == marker => fence = None,
                    Some(_) => {}
                }
                return false;
            }
        }
        fence.is_none()
    })
}

/// A line without its inline code spans (`` `...` ``), which hold no links.
fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    for (i, part) in line.split('`').enumerate() {
        if i % 2 == 0 {
            out.push_str(part);
        }
    }
    out
}

/// The targets of the inline links `[text](target)` of a Markdown text.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose_lines(text) {
        let line = without_code_spans(line);
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let end = after.find(')').unwrap_or(after.len());
            // `(target "title")`: the target is the first word.
            let target = after[..end].split_whitespace().next().unwrap_or("");
            targets.push(target.to_owned());
            rest = &after[end..];
        }
    }
    targets
}

/// GitHub's anchor for a heading's text: lower case, punctuation other than
/// `-` and `_` dropped, spaces turned into `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown file's headings, numbered as GitHub numbers
/// repeated ones (`name`, `name-1`, `name-2`...).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut anchors = BTreeSet::new();
    for line in prose_lines(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(&line[hashes..]);
        let count = seen.entry(base.clone()).or_default();
        anchors.insert(if *count == 0 {
            base.clone()
        } else {
            format!("{base}-{count}")
        });
        *count += 1;
    }
    anchors
}

/// `dir/../x` as `x`, without touching the file system.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                assert!(out.pop(), "{} leaves the repository", path.display());
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The problems with the relative links of `file` (relative to the root),
/// given the texts of the files by path; the checked files' texts are in
/// `texts`, any other file is read from disk.
fn broken_links(file: &Path, texts: &BTreeMap<PathBuf, String>) -> Vec<String> {
    let mut broken = Vec::new();
    for target in link_targets(&texts[file]) {
        if target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        let (path, anchor) = match target.split_once('#') {
            Some((path, anchor)) => (path, Some(anchor)),
            None => (target.as_str(), None),
        };
        let linked = if path.is_empty() {
            file.to_path_buf()
        } else {
            normalise(&file.parent().unwrap_or(Path::new("")).join(path))
        };
        let text = match texts.get(&linked) {
            Some(text) => text.clone(),
            None if root().join(&linked).is_file() => read(&root().join(&linked)),
            None if root().join(&linked).is_dir() && anchor.is_none() => continue,
            None => {
                broken.push(format!("{}: {target}: no such file", file.display()));
                continue;
            }
        };
        if let Some(anchor) = anchor {
            let is_markdown = linked.extension().is_some_and(|e| e == "md");
            if !is_markdown || !anchors(&text).contains(anchor) {
                broken.push(format!(
                    "{}: {target}: no heading #{anchor} in {}",
                    file.display(),
                    linked.display()
                ));
            }
        }
    }
    broken
}

fn texts() -> BTreeMap<PathBuf, String> {
    checked_files()
        .into_iter()
        .map(|file| {
            let text = read(&root().join(&file));
            (file, text)
        })
        .collect()
}

#[test]
fn slugs_follow_githubs_rules() {
    assert_eq!(slug("The API and the stream"), "the-api-and-the-stream");
    assert_eq!(slug("Pushpin's limits"), "pushpins-limits");
    assert_eq!(
        slug("Score-add at `832345d`: no board read on boards that do not reset"),
        "score-add-at-832345d-no-board-read-on-boards-that-do-not-reset"
    );
    assert_eq!(
        slug("The origin's cost per score-add: missed (1.75× and 1.85× at `832345d`)"),
        "the-origins-cost-per-score-add-missed-175-and-185-at-832345d"
    );
    assert_eq!(slug("GRIP_URL"), "grip_url");
    let repeated = anchors("# A\n## B\n```\n# not a heading\n```\n### B\n");
    assert_eq!(repeated, ["a", "b", "b-1"].map(String::from).into());
    assert_eq!(
        link_targets("[a](x.md#y) `[b](code.md)` [c](https://e.x \"t\")\n```\n[d](no.md)\n```"),
        vec!["x.md#y", "https://e.x"]
    );
}

#[test]
fn every_relative_link_reaches_a_file_and_a_heading() {
    let texts = texts();
    let broken: Vec<String> = texts
        .keys()
        .flat_map(|file| broken_links(file, &texts))
        .collect();
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_links_every_docs_page() {
    let readme = read(&root().join("README.md"));
    let linked: BTreeSet<PathBuf> = link_targets(&readme)
        .iter()
        .map(|target| normalise(Path::new(target.split('#').next().unwrap_or_default())))
        .collect();
    let pages = docs_pages();
    assert!(!pages.is_empty(), "docs/ has no page");
    let unlinked: Vec<String> = pages
        .iter()
        .filter(|page| !linked.contains(*page))
        .map(|page| page.display().to_string())
        .collect();
    assert!(
        unlinked.is_empty(),
        "docs pages the README does not link: {unlinked:?}"
    );
}

#[test]
fn the_readme_is_a_front_door() {
    let readme = read(&root().join("README.md"));
    let lines = readme.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, more than {README_MAX_LINES}: move the detail into docs/"
    );
    // The two commands of a fresh machine, as .ci/run runs the second.
    let commands: Vec<&str> = readme
        .lines()
        .filter(|line| line.starts_with("scripts/"))
        .collect();
    assert_eq!(
        commands,
        [
            "scripts/up      # the whole stack on http://localhost:7999, with a demo board",
            "scripts/test    # every test",
        ]
    );
}

/// Which binaries read a variable, as the table's "Used by" column says.
fn used_by(web: bool, worker: bool) -> &'static str {
    match (web, worker) {
        (true, true) => "both",
        (true, false) => "web",
        (false, true) => "worker",
        (false, false) => "neither",
    }
}

/// The rows of `docs/configuration.md`'s table of variables: each variable
/// (a row may name several) with its "Used by" cell.
fn documented_variables() -> BTreeMap<String, String> {
    let text = read(&root().join("docs/configuration.md"));
    let mut rows = BTreeMap::new();
    let mut in_table = false;
    for line in prose_lines(&text) {
        if line.starts_with("| Variable |") {
            in_table = true;
            continue;
        }
        if !in_table || line.starts_with("|---") {
            continue;
        }
        if !line.starts_with('|') {
            if !rows.is_empty() {
                break;
            }
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (names, users) = (cells[1], cells[2]);
        for name in names.split(',') {
            let name = name.trim().trim_matches('`');
            let previous = rows.insert(name.to_owned(), users.to_owned());
            assert!(previous.is_none(), "{name} is in the table twice");
        }
    }
    assert!(
        !rows.is_empty(),
        "docs/configuration.md has no `| Variable |` table"
    );
    rows
}

#[test]
fn the_configuration_table_lists_exactly_what_the_binaries_read() {
    let web: BTreeSet<String> = web::config::Settings::variables().into_iter().collect();
    let worker: BTreeSet<String> = dblistener::config::Settings::variables()
        .into_iter()
        .collect();
    assert!(web.contains("PORT") && worker.contains("WORKER_SHARDS"));
    // Both binaries start env_logger from its default variables.
    let logger = [
        env_logger::DEFAULT_FILTER_ENV,
        env_logger::DEFAULT_WRITE_STYLE_ENV,
    ];
    let mut read: BTreeMap<String, &str> = BTreeMap::new();
    for name in web.union(&worker) {
        read.insert(
            name.clone(),
            used_by(web.contains(name), worker.contains(name)),
        );
    }
    for name in logger {
        read.insert(name.to_owned(), "both");
    }

    let documented = documented_variables();
    let mut problems = Vec::new();
    for (name, users) in &read {
        match documented.get(name) {
            None => problems.push(format!(
                "{name} is read ({users}) but not in docs/configuration.md"
            )),
            Some(said) if said != users => problems.push(format!(
                "{name}: docs/configuration.md says it is used by {said}, the code says {users}"
            )),
            Some(_) => {}
        }
    }
    for name in documented.keys() {
        if !read.contains_key(name) {
            problems.push(format!(
                "{name} is in docs/configuration.md but no binary reads it"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

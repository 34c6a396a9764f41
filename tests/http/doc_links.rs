//! Every relative link of the repository's Markdown files resolves inside the repository:
//! `[text](path)` links (anchors and URLs aside) and `` `../path` `` mentions, relative to
//! the file that holds them. A clone has nothing outside the repository to point at.

use std::path::{Component, Path, PathBuf};

pub(crate) fn repo() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR (set by cargo test and nextest at run time)"))
}

/// The files under `dir` whose names end with `suffix`, hidden directories and `target`
/// skipped.
pub(crate) fn files_ending(dir: &Path, suffix: &str, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" {
                files_ending(&path, suffix, out);
            }
        } else if name.ends_with(suffix) {
            out.push(path);
        }
    }
}

/// Relative link targets in `text`: `](target)` and `` `../target` ``, without `#anchor`.
fn relative_targets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("](") {
        let rest = &text[i + 2..];
        let Some(end) = rest.find(')') else { continue };
        let target = rest[..end].split_whitespace().next().unwrap_or_default();
        if !target.is_empty() && !target.starts_with('#') && !target.contains("://") && !target.starts_with("mailto:") {
            out.push(target.split('#').next().unwrap_or_default().to_owned());
        }
    }
    for (i, _) in text.match_indices("`../") {
        let rest = &text[i + 1..];
        if let Some(end) = rest.find('`') {
            out.push(rest[..end].to_owned());
        }
    }
    out
}

/// `base/target` with `.` and `..` resolved lexically; `None` if it climbs above `/`.
fn resolve(base: &Path, target: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in base.join(target).components() {
        match c {
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Some(out)
}

#[test]
fn relative_links_in_markdown_resolve_inside_the_repository() {
    let repo = repo();
    let mut files = Vec::new();
    files_ending(&repo, ".md", &mut files);
    assert!(files.iter().any(|f| f.ends_with("README.md")), "found the README");
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read markdown");
        let dir = file.parent().expect("parent");
        for target in relative_targets(&text) {
            let ok = resolve(dir, &target).is_some_and(|p| p.starts_with(&repo) && p.exists());
            if !ok {
                broken.push(format!("{}: {target}", file.strip_prefix(&repo).expect("in repo").display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken relative links: {broken:#?}");
}

#[test]
fn the_link_scanner_sees_both_forms() {
    let text = "see [a](docs/x.md#part), [b](https://e.example/), [c](#top), `../shared/y.md` and `./z`";
    assert_eq!(relative_targets(text), vec!["docs/x.md".to_owned(), "../shared/y.md".to_owned()]);
    assert_eq!(resolve(Path::new("/r/a"), "../b/./c"), Some(PathBuf::from("/r/b/c")));
    assert_eq!(resolve(Path::new("/r"), "../../x"), None);
}

//! The server's rooms, checked from its sources (the Layout section of `src/lib.rs`): no file over
//! 600 lines, no circle of files importing each other, and HTTP types stay in `http/` (only the
//! wiring — `lib.rs`, `demo.rs`, the binary — reaches into it).
//!
//! A file depends on another when it names a path into it: `crate::a::b::Item` depends on the
//! file of the longest module prefix (`a/b.rs`), `super::…` likewise from its parent, and a child
//! module's name (`child::Item`, `pub use child::…`) on the child's file. Comments and a trailing
//! `#[cfg(test)] mod tests` are left out. A module's front door (`mod.rs`) re-exports its rooms for
//! the rest of the crate, so its own rooms reach each other by name, never through it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The longest a source file may grow before it is split into rooms.
const MAX_LINES: usize = 600;

/// Files allowed to name `crate::http`: the wiring that builds the router.
const HTTP_WIRING: [&str; 2] = ["lib.rs", "demo.rs"];

struct SourceFile {
    /// Path under `src/`, with `/` separators.
    name: String,
    /// Its module path (`store::sql::payments`), empty for the crate root.
    module: Vec<String>,
    /// Its text without comments and test module.
    code: String,
    lines: usize,
}

fn sources() -> Vec<SourceFile> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&root, &root, &mut files);
    files
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<SourceFile>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(root, &path, files);
            continue;
        }
        if path.extension().is_none_or(|ext| ext != "rs") {
            continue;
        }
        let name = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if name == "main.rs" {
            continue; // the binary: another crate, through `byfly_server::`
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut module: Vec<String> = name
            .trim_end_matches(".rs")
            .split('/')
            .map(str::to_owned)
            .collect();
        if module.last().is_some_and(|last| last == "mod" || last == "lib") {
            module.pop();
        }
        files.push(SourceFile {
            lines: text.lines().count(),
            code: without_comments_and_tests(&text),
            module,
            name,
        });
    }
}

fn without_comments_and_tests(text: &str) -> String {
    let cut = text.find("#[cfg(test)]\nmod tests").unwrap_or(text.len());
    text[..cut]
        .lines()
        .map(|line| line.split_once("//").map_or(line, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `a::b::c` run of identifiers in `code` (the part before a `{` group or a `*`).
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut i = 0;
    while i < bytes.len() {
        if !is_ident(bytes[i]) || (i > 0 && (is_ident(bytes[i - 1]) || bytes[i - 1] == ':')) {
            i += 1;
            continue;
        }
        let mut segments = Vec::new();
        let mut j = i;
        loop {
            let start = j;
            while j < bytes.len() && is_ident(bytes[j]) {
                j += 1;
            }
            if start == j {
                break;
            }
            segments.push(bytes[start..j].iter().collect::<String>());
            if j + 1 < bytes.len() && bytes[j] == ':' && bytes[j + 1] == ':' {
                j += 2;
            } else {
                break;
            }
        }
        if segments.len() > 1 {
            found.push(segments);
        }
        i = j.max(i + 1);
    }
    found
}

/// The file-to-file dependencies of the crate.
fn dependencies(files: &[SourceFile]) -> BTreeMap<String, BTreeSet<String>> {
    let by_module: BTreeMap<&[String], &str> = files
        .iter()
        .map(|file| (file.module.as_slice(), file.name.as_str()))
        .collect();
    let resolve = |absolute: &[String]| -> Option<&str> {
        (1..=absolute.len())
            .rev()
            .find_map(|n| by_module.get(&absolute[..n]).copied())
    };
    let mut edges = BTreeMap::new();
    for file in files {
        let mut targets = BTreeSet::new();
        for path in paths(&file.code) {
            let absolute: Option<Vec<String>> = match path[0].as_str() {
                "crate" => Some(path[1..].to_vec()),
                "super" => {
                    let mut base = file.module.clone();
                    let mut rest = &path[..];
                    while rest.first().is_some_and(|s| s == "super") {
                        base.pop();
                        rest = &rest[1..];
                    }
                    base.extend(rest.iter().cloned());
                    Some(base)
                }
                "self" => Some(file.module.iter().chain(&path[1..]).cloned().collect()),
                child => {
                    let mut candidate = file.module.clone();
                    candidate.push(child.to_owned());
                    by_module
                        .contains_key(candidate.as_slice())
                        .then(|| file.module.iter().chain(&path).cloned().collect())
                }
            };
            if let Some(target) = absolute.as_deref().and_then(resolve)
                && target != file.name
            {
                targets.insert(target.to_owned());
            }
        }
        edges.insert(file.name.clone(), targets);
    }
    edges
}

/// The groups of files that reach each other (Tarjan's strongly connected components of two or
/// more files).
fn circles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(walk: &mut Walk<'a>, node: &'a str) {
        let n = walk.index.len();
        walk.index.insert(node, n);
        walk.low.insert(node, n);
        walk.stack.push(node);
        walk.on_stack.insert(node);
        for next in walk.edges.get(node).into_iter().flatten() {
            let next = next.as_str();
            if !walk.index.contains_key(next) {
                visit(walk, next);
                let low = walk.low[node].min(walk.low[next]);
                walk.low.insert(node, low);
            } else if walk.on_stack.contains(next) {
                let low = walk.low[node].min(walk.index[next]);
                walk.low.insert(node, low);
            }
        }
        if walk.low[node] == walk.index[node] {
            let mut group = Vec::new();
            while let Some(member) = walk.stack.pop() {
                walk.on_stack.remove(member);
                group.push(member.to_owned());
                if member == node {
                    break;
                }
            }
            if group.len() > 1 {
                group.sort();
                walk.found.push(group);
            }
        }
    }
    let mut walk = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in edges.keys() {
        if !walk.index.contains_key(node.as_str()) {
            visit(&mut walk, node);
        }
    }
    walk.found
}

#[test]
fn no_source_file_is_over_600_lines() {
    let long: Vec<String> = sources()
        .into_iter()
        .filter(|file| file.lines > MAX_LINES)
        .map(|file| format!("{} ({} lines)", file.name, file.lines))
        .collect();
    assert!(long.is_empty(), "split these into rooms: {long:?}");
}

#[test]
fn no_files_import_each_other_in_a_circle() {
    let found = circles(&dependencies(&sources()));
    assert!(found.is_empty(), "files in a circle: {found:#?}");
}

#[test]
fn only_the_wiring_reaches_into_http() {
    let files = sources();
    let edges = dependencies(&files);
    let offenders: Vec<String> = edges
        .iter()
        .filter(|(from, _)| !from.starts_with("http/") && !HTTP_WIRING.contains(&from.as_str()))
        .filter(|(_, targets)| targets.iter().any(|target| target.starts_with("http/")))
        .map(|(from, _)| from.clone())
        .collect();
    assert!(offenders.is_empty(), "these import crate::http: {offenders:?}");
}

/// The checker itself sees what it must: a circle made on purpose, a parent's re-export, a child.
#[test]
fn the_checker_finds_a_circle_through_super_and_a_child_module() {
    let file = |name: &str, module: &[&str], code: &str| SourceFile {
        name: name.to_owned(),
        module: module.iter().map(|s| (*s).to_owned()).collect(),
        code: without_comments_and_tests(code),
        lines: 1,
    };
    let files = [
        file("lib.rs", &[], "pub mod a;\npub mod b;\n"),
        file(
            "a/mod.rs",
            &["a"],
            "mod inner;\npub use inner::Thing; // crate::b is a comment\n",
        ),
        file("a/inner.rs", &["a", "inner"], "use super::super::b::Other;\n"),
        file("b.rs", &["b"], "use crate::a::Thing;\n"),
    ];
    let edges = dependencies(&files);
    assert_eq!(edges["a/mod.rs"], BTreeSet::from(["a/inner.rs".to_owned()]));
    assert_eq!(edges["b.rs"], BTreeSet::from(["a/mod.rs".to_owned()]));
    assert_eq!(
        circles(&edges),
        vec![vec![
            "a/inner.rs".to_owned(),
            "a/mod.rs".to_owned(),
            "b.rs".to_owned()
        ]]
    );
}

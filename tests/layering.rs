//! The shape of `src/`, checked: no import cycles between modules (files) or between the crate's
//! top-level modules (folders), no file over 500 lines, no `Result<_, String>` in a public
//! signature. `cargo test --test layering` prints every offender.
//!
//! How modules are read: a file is a module (`src/a/b.rs` and `src/a/b/mod.rs` are `crate::a::b`;
//! a `#[path]` file is the module that names it). Its edges are the modules its `use`
//! declarations and `crate::`/`super::`/`self::` paths name, resolved to the longest module
//! prefix; `mod x;` declarations are not edges, `pub use` re-exports are. Code after a file's
//! first `#[cfg(test)]`, and `tests.rs` files, are left out: tests may reach anywhere. A glob
//! `use super::*` is taken to sit in an inline module (defaults, tests) and left out too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 500;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `crate::a::b` for `src/a/b.rs` or `src/a/b/mod.rs`.
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
        parts.pop();
    }
    let mut m = vec!["crate".to_string()];
    m.extend(parts);
    m
}

/// The code of a file that counts: without comments, string contents and tests.
fn code_of(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    let mut out = String::new();
    for line in text.lines() {
        let line = match line.find("//") {
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        };
        out.push_str(line);
        out.push('\n');
    }
    // Drop string literals so paths inside messages do not count.
    let mut clean = String::with_capacity(out.len());
    let mut in_str = false;
    let mut prev = ' ';
    for c in out.chars() {
        if c == '"' && prev != '\\' && prev != '\'' {
            in_str = !in_str;
        } else if !in_str {
            clean.push(c);
        }
        prev = if prev == '\\' && c == '\\' { ' ' } else { c };
    }
    clean
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or("").trim();
        return vec![path.to_string()];
    };
    let prefix = tree[..open].trim().trim_end_matches("::");
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(expand)
        .map(|p| {
            if p == "self" {
                prefix.to_string()
            } else {
                format!("{prefix}::{p}")
            }
        })
        .collect()
}

/// Every path a file names: its `use` trees and inline `crate::`/`super::` paths.
fn paths_in(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let before = rest[..i].chars().last();
        let word_start = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        let after = &rest[i + 4..];
        if word_start {
            if let Some(end) = after.find(';') {
                let tree = &after[..end];
                if !tree.contains('(') && !tree.contains('=') {
                    out.extend(expand(tree));
                }
            }
        }
        rest = after;
    }
    for prefix in ["crate::", "super::"] {
        let mut rest = code;
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().last();
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':')) {
                out.push(tail[..end].trim_end_matches(':').to_string());
            }
            rest = &rest[i + prefix.len()..];
        }
    }
    out
}

/// Inline paths into a module's own submodules (`engine::QUEUE`, `validate::from_raw(..)`).
fn child_paths(code: &str, children: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    for child in children {
        let needle = format!("{child}::");
        let mut rest = code;
        while let Some(i) = rest.find(&needle) {
            let before = rest[..i].chars().last();
            if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':')) {
                let tail = &rest[i..];
                let end = tail
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .unwrap_or(tail.len());
                out.push(tail[..end].trim_end_matches(':').to_string());
            }
            rest = &rest[i + needle.len()..];
        }
    }
    out
}

/// A path named in module `from`, made absolute (`crate::...`), or `None` for other crates.
/// `children` are the names of `from`'s own submodules, which a path may start with.
fn absolute(path: &str, from: &[String], children: &BTreeSet<String>) -> Option<Vec<String>> {
    let mut parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
    let mut base: Vec<String> = match parts.first().copied() {
        Some("crate") => {
            parts.remove(0);
            vec!["crate".to_string()]
        }
        Some("super") | Some("self") => from.to_vec(),
        Some(first) if children.contains(first) => from.to_vec(),
        _ => return None,
    };
    while let Some(&p) = parts.first() {
        match p {
            "super" => {
                base.pop();
                parts.remove(0);
            }
            "self" => {
                parts.remove(0);
            }
            _ => break,
        }
    }
    base.extend(parts.into_iter().map(String::from));
    Some(base)
}

struct Tree {
    /// Module path → file.
    modules: BTreeMap<Vec<String>, PathBuf>,
    /// Module → modules it uses.
    edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
}

fn read_tree() -> Tree {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.retain(|f| !f.ends_with("main.rs"));
    let mut modules: BTreeMap<Vec<String>, PathBuf> = BTreeMap::new();
    for f in &files {
        modules.insert(module_of(f), f.clone());
    }
    // `#[path = "x.rs"] pub mod name;`: file x.rs is module `name` of the declaring module.
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            let Some(rest) = l.trim().strip_prefix("#[path = \"") else {
                continue;
            };
            let target = rest.trim_end_matches("\"]");
            let decl = lines[i + 1..].iter().find(|l| l.contains("mod "));
            let Some(name) = decl.and_then(|d| d.split("mod ").nth(1)) else {
                continue;
            };
            let name = name.trim_end_matches(';').trim();
            let file = f.parent().unwrap().join(target);
            let mut m = module_of(f);
            m.push(name.to_string());
            let old = module_of(&file);
            modules.remove(&old);
            modules.insert(m, file);
        }
    }
    let mut edges = BTreeMap::new();
    for (m, f) in &modules {
        if f.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(f).unwrap());
        let children: BTreeSet<String> = modules
            .keys()
            .filter(|c| c.len() == m.len() + 1 && c.starts_with(m))
            .map(|c| c[m.len()].clone())
            .collect();
        let mut to = BTreeSet::new();
        let named = paths_in(&code)
            .into_iter()
            .chain(child_paths(&code, &children));
        for p in named.filter(|p| p != "super::*" && p != "super") {
            let Some(abs) = absolute(&p, m, &children) else {
                continue;
            };
            // The longest prefix that is a module.
            let target = (1..=abs.len())
                .rev()
                .map(|n| abs[..n].to_vec())
                .find(|prefix| modules.contains_key(prefix));
            if let Some(t) = target {
                if &t != m {
                    to.insert(t);
                }
            }
        }
        edges.insert(m.clone(), to);
    }
    Tree { modules, edges }
}

/// Strongly connected components of more than one node (Tarjan).
fn cycles<N: Ord + Clone>(edges: &BTreeMap<N, BTreeSet<N>>) -> Vec<Vec<N>> {
    struct State<N> {
        index: BTreeMap<N, usize>,
        low: BTreeMap<N, usize>,
        stack: Vec<N>,
        on_stack: BTreeSet<N>,
        next: usize,
        out: Vec<Vec<N>>,
    }
    fn visit<N: Ord + Clone>(n: &N, e: &BTreeMap<N, BTreeSet<N>>, s: &mut State<N>) {
        s.index.insert(n.clone(), s.next);
        s.low.insert(n.clone(), s.next);
        s.next += 1;
        s.stack.push(n.clone());
        s.on_stack.insert(n.clone());
        for m in e.get(n).into_iter().flatten() {
            if !s.index.contains_key(m) {
                visit(m, e, s);
                let low = s.low[n].min(s.low[m]);
                s.low.insert(n.clone(), low);
            } else if s.on_stack.contains(m) {
                let low = s.low[n].min(s.index[m]);
                s.low.insert(n.clone(), low);
            }
        }
        if s.low[n] == s.index[n] {
            let mut scc = Vec::new();
            while let Some(m) = s.stack.pop() {
                s.on_stack.remove(&m);
                let done = &m == n;
                scc.push(m);
                if done {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                s.out.push(scc);
            }
        }
    }
    let mut s = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for n in edges.keys() {
        if !s.index.contains_key(n) {
            visit(n, edges, &mut s);
        }
    }
    s.out
}

fn show(m: &[String]) -> String {
    m.join("::")
}

#[test]
fn no_import_cycles_between_modules() {
    let tree = read_tree();
    let found = cycles(&tree.edges);
    let report: Vec<String> = found
        .iter()
        .map(|c| {
            let names: Vec<String> = c.iter().map(|m| show(m)).collect();
            let links: Vec<String> = c
                .iter()
                .flat_map(|a| {
                    tree.edges[a]
                        .iter()
                        .filter(|b| c.contains(b))
                        .map(move |b| format!("{} -> {}", show(a), show(b)))
                })
                .collect();
            format!("[{}]: {}", names.join(", "), links.join("; "))
        })
        .collect();
    assert!(report.is_empty(), "import cycles:\n{}", report.join("\n"));
    assert!(
        tree.modules.len() > 50,
        "read {} modules",
        tree.modules.len()
    );
}

#[test]
fn no_import_cycles_between_top_level_modules() {
    let tree = read_tree();
    let top = |m: &[String]| m[..m.len().min(2)].to_vec();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (a, targets) in &tree.edges {
        let entry = edges.entry(top(a)).or_default();
        for b in targets {
            if top(b) != top(a) && top(b).len() == 2 {
                entry.insert(top(b));
            }
        }
    }
    let found = cycles(&edges);
    let report: Vec<String> = found
        .iter()
        .map(|c| c.iter().map(|m| show(m)).collect::<Vec<_>>().join(" <-> "))
        .collect();
    assert!(
        report.is_empty(),
        "cycles between folders:\n{}",
        report.join("\n")
    );
}

/// The top-level modules in the order `src/lib.rs`'s "# Layout" lists them.
fn layout_order() -> Vec<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    lib.lines()
        .filter_map(|l| l.strip_prefix("//! - [`"))
        .filter_map(|l| l.split('`').next())
        .map(String::from)
        .collect()
}

#[test]
fn top_level_modules_use_only_those_listed_before_them() {
    let tree = read_tree();
    let order = layout_order();
    let tops: BTreeSet<String> = tree
        .modules
        .keys()
        .filter(|m| m.len() == 2)
        .map(|m| m[1].clone())
        .collect();
    let listed: BTreeSet<String> = order.iter().cloned().collect();
    assert_eq!(
        listed, tops,
        "src/lib.rs's Layout must list every top-level module once"
    );
    let rank = |m: &str| order.iter().position(|o| o == m).unwrap();
    let mut wrong = Vec::new();
    for (a, targets) in &tree.edges {
        for b in targets {
            if a.len() < 2 || b.len() < 2 || a[1] == b[1] {
                continue;
            }
            if rank(&b[1]) > rank(&a[1]) {
                wrong.push(format!("{} uses {}", show(a), show(b)));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "src/lib.rs's Layout says each module uses only those above it:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_checker_sees_a_cycle_when_there_is_one() {
    let m = |s: &str| vec![s.to_string()];
    let mut e = BTreeMap::new();
    e.insert(m("a"), BTreeSet::from([m("b")]));
    e.insert(m("b"), BTreeSet::from([m("c")]));
    e.insert(m("c"), BTreeSet::from([m("a")]));
    e.insert(m("d"), BTreeSet::from([m("a")]));
    assert_eq!(cycles(&e), vec![vec![m("a"), m("b"), m("c")]]);
    assert_eq!(
        expand("crate::a::{b, c::{d as e, self}}"),
        vec!["crate::a::b", "crate::a::c::d", "crate::a::c"]
    );
    let from = vec!["crate".to_string(), "x".to_string(), "y".to_string()];
    let kids = BTreeSet::from(["k".to_string()]);
    assert_eq!(
        absolute("super::z::W", &from, &kids).unwrap(),
        vec!["crate", "x", "z", "W"]
    );
    assert_eq!(
        absolute("k::V", &from, &kids).unwrap(),
        vec!["crate", "x", "y", "k", "V"]
    );
    assert_eq!(absolute("serde::Serialize", &from, &kids), None);
    assert_eq!(child_paths("let q = k::f(x::k::g);", &kids), vec!["k::f"]);
    let code = code_of("use super::q::R; // crate::not::this\nlet s = \"crate::nor::this\";\n");
    assert_eq!(paths_in(&code), vec!["super::q::R", "super::q::R"]);
}

#[test]
fn no_file_in_src_is_over_500_lines() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > MAX_LINES).then(|| format!("{}: {n} lines", f.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn no_public_signature_returns_a_string_error() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut found = Vec::new();
    for f in &files {
        let code = code_of(&std::fs::read_to_string(f).unwrap());
        let mut rest = code.as_str();
        while let Some(i) = rest.find("pub fn ") {
            let sig = &rest[i..];
            let end = sig.find('{').or_else(|| sig.find(';')).unwrap_or(sig.len());
            let sig: String = sig[..end].split_whitespace().collect::<Vec<_>>().join(" ");
            if sig.contains(", String>") {
                found.push(format!("{}: {sig}", f.display()));
            }
            rest = &rest[i + 7..];
        }
        if code.contains("type Err = String") {
            found.push(format!("{}: a FromStr with String errors", f.display()));
        }
    }
    assert!(
        found.is_empty(),
        "public signatures with String errors (use a typed error):\n{}",
        found.join("\n")
    );
}

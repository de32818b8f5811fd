//! A check that dependencies between the crate's top-level modules point one way.
//!
//! The test reads the crate's own sources (under `CARGO_MANIFEST_DIR`), finds every path that
//! starts at `crate::` in code (comments and string literals are skipped), and draws an edge
//! from the module whose file holds it (`foo.rs` and everything under `foo/`) to the top-level
//! module the path names. Test files (`tests.rs`, anything under a `tests/` folder) are left
//! out: tests may reach across. Any cycle fails the test and is printed with the file and line
//! of each edge. Top-level modules are all siblings, so no parent↔child cycle is allowed here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Where each edge comes from: "file:line" of every reference.
type Graph = BTreeMap<String, BTreeMap<String, Vec<String>>>;

#[test]
fn top_level_modules_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph(&src);
    // A parse that found nothing would pass vacuously.
    assert!(
        graph.get("gateway").is_some_and(|edges| edges.contains_key("broker")),
        "the graph misses the composition root's edges: {graph:?}"
    );
    let cycles: Vec<String> = components(&graph)
        .into_iter()
        .filter(|component| component.len() > 1)
        .map(|component| describe(&graph, &component))
        .collect();
    assert!(cycles.is_empty(), "cycles between top-level modules:\n{}", cycles.join("\n"));
}

#[test]
fn the_check_sees_a_cycle() {
    let mut graph = Graph::new();
    graph.entry("a".into()).or_default().insert("b".into(), vec!["a.rs:1".into()]);
    graph.entry("b".into()).or_default().insert("a".into(), vec!["b/c.rs:2".into()]);
    graph.entry("c".into()).or_default().insert("a".into(), vec!["c.rs:3".into()]);
    let found = components(&graph);
    let cyclic: Vec<_> = found.iter().filter(|c| c.len() > 1).collect();
    assert_eq!(cyclic.len(), 1);
    assert_eq!(describe(&graph, cyclic[0]), "a -> b (a.rs:1) -> a (b/c.rs:2)");
}

#[test]
fn paths_in_code_count_and_comments_do_not() {
    let text = "use crate::{broker::{self, Broker}, mqtt};\n\
                // crate::config\n\
                let s = \"crate::store\"; let r = r#\"crate::hooks\"#;\n\
                /* crate::server */ crate::routing::Router::new();\n";
    let found: Vec<_> = references(text).into_iter().map(|(name, _)| name).collect();
    assert_eq!(found, ["broker", "mqtt", "routing"]);
}

/// The graph of the top-level modules declared in `src/lib.rs`.
fn graph(src: &Path) -> Graph {
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs");
    let modules: BTreeSet<String> = lib
        .lines()
        .filter_map(|line| {
            // `mod x;`, `pub mod x;`, `pub(crate) mod x;`
            let (_, declared) = line.trim().split_once("mod ")?;
            declared.strip_suffix(';').map(str::to_string)
        })
        .collect();
    let mut graph = Graph::new();
    for module in &modules {
        let mut files = vec![src.join(format!("{module}.rs"))];
        files.extend(rust_files(&src.join(module)));
        for file in files.iter().filter(|file| file.exists()) {
            let relative = file.strip_prefix(src).unwrap_or(file).display().to_string();
            if relative.ends_with("tests.rs") || relative.contains("tests/") {
                continue;
            }
            let text = std::fs::read_to_string(file).expect("a readable source file");
            for (target, line) in references(&text) {
                if &target != module && modules.contains(&target) {
                    graph
                        .entry(module.clone())
                        .or_default()
                        .entry(target)
                        .or_default()
                        .push(format!("{relative}:{line}"));
                }
            }
        }
    }
    graph
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// The first segment after each `crate::` in code, with its line: `crate::a::B` gives `a`,
/// `crate::{a::B, c}` gives `a` and `c`.
fn references(text: &str) -> Vec<(String, usize)> {
    let code = code_only(text);
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    let prefix = "crate::";
    let mut start = 0;
    while let Some(offset) = code[start..].find(prefix) {
        let at = start + offset;
        start = at + prefix.len();
        // `$crate::` and `foo_crate::` are not paths from this crate's root.
        if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || b"_$".contains(&bytes[at - 1])) {
            continue;
        }
        let line = code[..at].matches('\n').count() + 1;
        if bytes.get(start) == Some(&b'{') {
            // Only the names right after `{` or `,` at the group's own depth.
            let mut depth = 0;
            let mut expect_name = false;
            for (i, c) in code[start..].char_indices() {
                match c {
                    '{' => {
                        depth += 1;
                        expect_name = depth == 1;
                    }
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => expect_name = true,
                    c if expect_name && (c.is_alphabetic() || c == '_') => {
                        found.push((identifier(&code[start + i..]), line));
                        expect_name = false;
                    }
                    c if c.is_whitespace() => {}
                    _ => expect_name = false,
                }
            }
        } else {
            found.push((identifier(&code[start..]), line));
        }
    }
    found
}

fn identifier(text: &str) -> String {
    text.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
}

/// `text` with comments, string and character literals blanked out (newlines kept, so line
/// numbers hold).
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                out.push(blank(chars[i]));
                i += 1;
            }
            i += 2;
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !ident_before(&chars, i) {
            let hashes = chars[i + 1..].iter().take_while(|&&c| c == '#').count();
            if chars.get(i + 1 + hashes) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            i += 2 + hashes;
            let close: Vec<char> = std::iter::once('"').chain("#".repeat(hashes).chars()).collect();
            while i < chars.len() && !chars[i..].starts_with(&close) {
                out.push(blank(chars[i]));
                i += 1;
            }
            i += close.len();
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                }
                i += 1;
            }
            i += 1;
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            // A character literal such as '"'; lifetimes have no closing quote there.
            i += 3;
        } else if c == '\'' && next == Some('\\') {
            // An escaped character literal such as '\'' or '\u{7f}'.
            i += 3;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_before(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// Strongly connected components (Tarjan), each sorted.
fn components(graph: &Graph) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(state: &mut State<'a>, node: &'a str) {
        let index = state.index.len();
        state.index.insert(node, index);
        state.low.insert(node, index);
        state.stack.push(node);
        for next in state.graph.get(node).into_iter().flat_map(|edges| edges.keys()) {
            let next = next.as_str();
            if !state.index.contains_key(next) {
                visit(state, next);
                let low = state.low[node].min(state.low[next]);
                state.low.insert(node, low);
            } else if state.stack.contains(&next) {
                let low = state.low[node].min(state.index[next]);
                state.low.insert(node, low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut component = Vec::new();
            while let Some(member) = state.stack.pop() {
                component.push(member.to_string());
                if member == node {
                    break;
                }
            }
            component.sort();
            state.found.push(component);
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node.as_str()) {
            visit(&mut state, node);
        }
    }
    state.found
}

/// One cycle through the component's first member, shortest first (breadth-first), with the
/// first reference of each edge; then the component's other members.
fn describe(graph: &Graph, component: &[String]) -> String {
    let members: BTreeSet<&str> = component.iter().map(String::as_str).collect();
    let start = component[0].as_str();
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    let mut last = None;
    'search: while let Some(node) = queue.pop_front() {
        for next in graph.get(node).into_iter().flat_map(|edges| edges.keys()) {
            let next = next.as_str();
            if !members.contains(next) {
                continue;
            }
            if next == start {
                last = Some(node);
                break 'search;
            }
            if !came_from.contains_key(next) {
                came_from.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    let mut path = vec![start];
    let mut node = last.unwrap_or(start);
    while node != start {
        path.push(node);
        node = came_from[node];
    }
    path[1..].reverse();
    path.push(start);
    let mut text = start.to_string();
    for pair in path.windows(2) {
        let at = &graph[pair[0]][pair[1]][0];
        text.push_str(&format!(" -> {} ({at})", pair[1]));
    }
    if component.len() > 2 {
        text.push_str(&format!("; the cycle's component: {}", component.join(", ")));
    }
    text
}

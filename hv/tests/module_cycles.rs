//! Import-cycle check for hv's modules (issue 10: "no import cycles between
//! hv's modules other than inside arch/aarch64").
//!
//! Reads `hv/src/**/*.rs` with `std::fs` (no parser crate), builds the module
//! graph and reports every strongly connected component of more than one
//! module, with the lines that make it. The rules (see DESIGN.md, "Module
//! layering"):
//!
//! - a node per module: per file, and per inline `mod name { ... }`;
//! - an edge M -> N when M's code names N: a `use` (trees expanded), or a
//!   `crate::a::b::...`, `super::...`, `self::...` or `$crate::...` path in
//!   code, or a `name::...` path where a `use` of the module (or of an
//!   enclosing one in the same file) bound `name`; a path names the deepest
//!   module it walks through (`crate::xen::abi::nr::X` names `xen::abi::nr`);
//! - edges between a module and its own ancestors or descendants are ignored:
//!   nesting is ownership (a parent re-exports or drives its children, a child
//!   uses its parent's items), not layering;
//! - nothing inside `hv/src/arch/aarch64/` is read (the arch layer is one unit;
//!   a path into it names `arch::aarch64`);
//! - comments, strings and char literals are blanked first; `#[cfg]` is not
//!   evaluated (every module of every configuration counts, tests included).
//!
//! Not seen: paths a macro expands to at its call site (`crate::glog!` names
//! the crate root, not `ratelimit`), and names brought in by glob imports of a
//! module that itself re-exports (the edge goes to the module that was named).
#![allow(missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The cycles hv has today, each as its sorted module list. The test fails on
/// any cycle not listed here AND on a listed cycle that no longer exists (the
/// list only shrinks). Issue 10 empties it.
const KNOWN_CYCLES: &[&[&str]] = &[
    &["crate::dom0less", "crate::start"],
    &["crate::domain", "crate::xen::domu"],
];

/// Module paths not read (their files nor their children's).
const SKIPPED: &[&str] = &["crate::arch::aarch64"];

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Tok {
    text: String,
    line: usize,
}

/// Blanks comments, string, byte-string, raw-string and char literals (a
/// string becomes `""`), keeping line numbers.
fn strip(src: &str) -> String {
    let b: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let n = b.len();
    let keep_newlines = |out: &mut String, s: &[char]| {
        for c in s {
            if *c == '\n' {
                out.push('\n');
            }
        }
    };
    while i < n {
        let c = b[i];
        // Line comment.
        if c == '/' && i + 1 < n && b[i + 1] == '/' {
            while i < n && b[i] != '\n' {
                i += 1;
            }
            continue;
        }
        // Block comment (nested).
        if c == '/' && i + 1 < n && b[i + 1] == '*' {
            let start = i;
            let mut depth = 0;
            while i < n {
                if b[i] == '/' && i + 1 < n && b[i + 1] == '*' {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && i + 1 < n && b[i + 1] == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            keep_newlines(&mut out, &b[start..i]);
            out.push(' ');
            continue;
        }
        let prev_ident = i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_');
        // Raw strings: r"..", r#".."#, br#".."#.
        if !prev_ident && (c == 'r' || (c == 'b' && i + 1 < n && b[i + 1] == 'r')) {
            let mut j = if c == 'b' { i + 2 } else { i + 1 };
            let mut hashes = 0;
            while j < n && b[j] == '#' {
                hashes += 1;
                j += 1;
            }
            if j < n && b[j] == '"' {
                let start = i;
                j += 1;
                'raw: while j < n {
                    if b[j] == '"' {
                        let mut k = 0;
                        while k < hashes && j + 1 + k < n && b[j + 1 + k] == '#' {
                            k += 1;
                        }
                        if k == hashes {
                            j += 1 + hashes;
                            break 'raw;
                        }
                    }
                    j += 1;
                }
                keep_newlines(&mut out, &b[start..j]);
                out.push_str("\"\"");
                i = j;
                continue;
            }
        }
        // Strings and byte strings.
        if c == '"' || (!prev_ident && c == 'b' && i + 1 < n && b[i + 1] == '"') {
            let start = i;
            let mut j = if c == 'b' { i + 2 } else { i + 1 };
            while j < n && b[j] != '"' {
                if b[j] == '\\' {
                    j += 1;
                }
                j += 1;
            }
            j += 1;
            keep_newlines(&mut out, &b[start..j.min(n)]);
            out.push_str("\"\"");
            i = j;
            continue;
        }
        // Char literals (not lifetimes): 'x', '\n', '\u{..}', b'x'.
        if c == '\'' || (!prev_ident && c == 'b' && i + 1 < n && b[i + 1] == '\'') {
            let q = if c == 'b' { i + 1 } else { i };
            if q + 2 < n && b[q + 1] == '\\' {
                let mut j = q + 2;
                while j < n && b[j] != '\'' {
                    j += 1;
                }
                out.push_str("' '");
                i = j + 1;
                continue;
            }
            if q + 2 < n && b[q + 2] == '\'' {
                out.push_str("' '");
                i = q + 3;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// Identifiers (with `$crate`), `::` and single punctuation characters.
fn tokens(src: &str) -> Vec<Tok> {
    let b: Vec<char> = strip(src).chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_alphanumeric() || c == '_' || (c == '$' && i + 1 < b.len()) {
            let s = i;
            i += 1;
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_') {
                i += 1;
            }
            let text: String = b[s..i].iter().collect();
            let text = text.strip_prefix("r#").map(str::to_string).unwrap_or(text);
            out.push(Tok { text, line });
        } else if c == ':' && i + 1 < b.len() && b[i + 1] == ':' {
            out.push(Tok {
                text: "::".into(),
                line,
            });
            i += 2;
        } else {
            out.push(Tok {
                text: c.to_string(),
                line,
            });
            i += 1;
        }
    }
    out
}

/// One reference from a module: the path as written (made absolute) and where.
#[derive(Debug, Clone)]
struct Ref {
    path: Vec<String>,
    file: String,
    line: usize,
}

#[derive(Debug, Default)]
struct Module {
    refs: Vec<Ref>,
}

/// The module tree of a crate and every module's references.
#[derive(Debug, Default)]
struct Crate {
    modules: BTreeMap<String, Module>,
    /// file -> its source lines (for the report).
    sources: BTreeMap<String, Vec<String>>,
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_' || c == '$')
}

/// Makes `segs` (as written in module `m`) absolute; `None` for paths that
/// do not start at `crate`, `$crate`, `self` or `super` (extern crates,
/// std, or names already imported in scope: those come from a `use` that was
/// counted itself).
fn absolute(m: &str, segs: &[String]) -> Option<Vec<String>> {
    let mut cur: Vec<String> = m.split("::").map(str::to_string).collect();
    let mut it = segs.iter().peekable();
    match it.peek().map(|s| s.as_str()) {
        Some("crate") | Some("$crate") => {
            it.next();
            cur = vec!["crate".into()];
        }
        Some("self") => {
            it.next();
        }
        Some("super") => {}
        _ => return None,
    }
    while it.peek().map(|s| s.as_str()) == Some("super") {
        it.next();
        cur.pop();
        if cur.is_empty() {
            return None;
        }
    }
    cur.extend(it.cloned());
    Some(cur)
}

/// One leaf of a `use` tree: the path, its line, and the name it binds
/// (`None` for globs and `as _`).
struct UseLeaf {
    path: Vec<String>,
    line: usize,
    name: Option<String>,
}

/// Expands a `use` tree starting at `toks[*i]`, prefixing `prefix`, until the
/// closing `;`, `,` or `}` of this tree level (left unconsumed).
fn use_tree(toks: &[Tok], i: &mut usize, prefix: Vec<String>, out: &mut Vec<UseLeaf>) {
    let mut path = prefix;
    let mut line = toks.get(*i).map_or(0, |t| t.line);
    let mut name: Option<Option<String>> = None;
    while *i < toks.len() {
        let t = &toks[*i];
        match t.text.as_str() {
            ";" | "," | "}" => {
                if !path.is_empty() {
                    let name = name.unwrap_or_else(|| path.last().cloned());
                    out.push(UseLeaf {
                        path: path.clone(),
                        line,
                        name,
                    });
                }
                return;
            }
            "::" => *i += 1,
            "{" => {
                *i += 1;
                loop {
                    use_tree(toks, i, path.clone(), out);
                    match toks.get(*i).map(|t| t.text.as_str()) {
                        Some(",") => *i += 1,
                        Some("}") => {
                            *i += 1;
                            break;
                        }
                        _ => return,
                    }
                }
                // Nothing more is pushed for this level.
                path.clear();
            }
            "*" => {
                name = Some(None);
                *i += 1;
            }
            "as" => {
                let alias = toks.get(*i + 1).map(|t| t.text.clone());
                name = Some(alias.filter(|a| a != "_"));
                *i += 2;
            }
            "self" if !path.is_empty() => *i += 1,
            s if is_ident(s) => {
                if path.is_empty() {
                    line = t.line;
                }
                path.push(s.to_string());
                *i += 1;
            }
            _ => *i += 1,
        }
    }
}

impl Crate {
    /// Reads the crate rooted at `root_file` (its `lib.rs`).
    fn read(src_dir: &Path, root_file: &str) -> Crate {
        let mut c = Crate::default();
        c.read_file(
            src_dir,
            &src_dir.join(root_file),
            "crate".into(),
            src_dir.to_path_buf(),
        );
        c
    }

    fn read_file(&mut self, src_dir: &Path, file: &Path, module: String, dir: PathBuf) {
        let src = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        assert!(
            !src.contains("#[path"),
            "{}: #[path] modules are not supported by this check; teach it",
            file.display()
        );
        let rel = file
            .strip_prefix(src_dir)
            .unwrap_or(file)
            .display()
            .to_string();
        self.sources
            .insert(rel.clone(), src.lines().map(str::to_string).collect());
        let toks = tokens(&src);
        // Stack of (module, its dir for `mod x;`, brace depth where it closes).
        let mut stack: Vec<(String, PathBuf, usize)> = vec![(module.clone(), dir, 0)];
        self.modules.entry(module).or_default();
        let mut depth = 0usize;
        // (module, name) -> the absolute path a `use` bound it to.
        let mut aliases: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        let mut children: Vec<(String, PathBuf, PathBuf)> = Vec::new();
        let mut i = 0;
        while i < toks.len() {
            let (cur, cur_dir, _) = stack.last().cloned().unwrap();
            let t = toks[i].text.as_str();
            let next = toks.get(i + 1).map(|t| t.text.as_str());
            let next2 = toks.get(i + 2).map(|t| t.text.as_str());
            let prev = if i > 0 { toks[i - 1].text.as_str() } else { "" };
            match t {
                "{" => {
                    depth += 1;
                    i += 1;
                }
                "}" => {
                    if stack.len() > 1 && stack.last().unwrap().2 == depth {
                        stack.pop();
                    }
                    depth = depth.saturating_sub(1);
                    i += 1;
                }
                "mod" if next.is_some_and(is_ident) && matches!(next2, Some("{") | Some(";")) => {
                    let name = next.unwrap().to_string();
                    let child = format!("{cur}::{name}");
                    let child_dir = cur_dir.join(&name);
                    if next2 == Some("{") {
                        self.modules.entry(child.clone()).or_default();
                        depth += 1;
                        stack.push((child, child_dir, depth));
                    } else if !SKIPPED.contains(&child.as_str()) {
                        let a = cur_dir.join(format!("{name}.rs"));
                        let b = cur_dir.join(&name).join("mod.rs");
                        let f = if a.exists() { a } else { b };
                        children.push((child, f, child_dir));
                    } else {
                        self.modules.entry(child).or_default();
                    }
                    i += 3;
                }
                "use" => {
                    i += 1;
                    let mut found = Vec::new();
                    use_tree(&toks, &mut i, Vec::new(), &mut found);
                    for leaf in found {
                        if let Some(path) = absolute(&cur, &leaf.path) {
                            if let Some(n) = leaf.name {
                                aliases.insert((cur.clone(), n), path.clone());
                            }
                            self.add_ref(&cur, path, &rel, leaf.line);
                        }
                    }
                }
                // `name::...` where `name` was bound by a `use` of this
                // module or an enclosing one (reached by `use super::*`).
                s if is_ident(s)
                    && next == Some("::")
                    && prev != "::"
                    && prev != "."
                    && Self::alias(&aliases, &cur, s).is_some() =>
                {
                    let line = toks[i].line;
                    let mut segs = Self::alias(&aliases, &cur, s).unwrap().clone();
                    let mut j = i + 1;
                    while toks.get(j).map(|t| t.text.as_str()) == Some("::")
                        && toks.get(j + 1).is_some_and(|t| is_ident(&t.text))
                    {
                        segs.push(toks[j + 1].text.clone());
                        j += 2;
                    }
                    self.add_ref(&cur, segs, &rel, line);
                    i = j;
                }
                "crate" | "$crate" | "self" | "super"
                    if next == Some("::") && prev != "::" && prev != "(" =>
                {
                    let line = toks[i].line;
                    let mut segs = vec![t.to_string()];
                    let mut j = i + 1;
                    while toks.get(j).map(|t| t.text.as_str()) == Some("::")
                        && toks.get(j + 1).is_some_and(|t| is_ident(&t.text))
                    {
                        segs.push(toks[j + 1].text.clone());
                        j += 2;
                    }
                    if let Some(path) = absolute(&cur, &segs) {
                        self.add_ref(&cur, path, &rel, line);
                    }
                    i = j;
                }
                _ => i += 1,
            }
        }
        for (child, f, child_dir) in children {
            self.read_file(src_dir, &f, child, child_dir);
        }
    }

    /// What `name` is bound to in `module` or the closest enclosing module
    /// of the same file.
    fn alias<'a>(
        aliases: &'a BTreeMap<(String, String), Vec<String>>,
        module: &str,
        name: &str,
    ) -> Option<&'a Vec<String>> {
        let mut m = module.to_string();
        loop {
            if let Some(p) = aliases.get(&(m.clone(), name.to_string())) {
                return Some(p);
            }
            m = m.rsplit_once("::")?.0.to_string();
        }
    }

    fn add_ref(&mut self, module: &str, path: Vec<String>, file: &str, line: usize) {
        self.modules
            .entry(module.to_string())
            .or_default()
            .refs
            .push(Ref {
                path,
                file: file.to_string(),
                line,
            });
    }

    /// The deepest known module a path walks through.
    fn target(&self, path: &[String]) -> String {
        let mut best = "crate".to_string();
        for k in 1..=path.len() {
            let p = path[..k].join("::");
            if self.modules.contains_key(&p) {
                best = p;
            } else if k > 1 {
                break;
            }
        }
        best
    }

    /// Edges between modules that are not ancestor/descendant of each other,
    /// each with the references that make it.
    fn edges(&self) -> BTreeMap<(String, String), Vec<Ref>> {
        let mut e: BTreeMap<(String, String), Vec<Ref>> = BTreeMap::new();
        for (m, md) in &self.modules {
            for r in &md.refs {
                let t = self.target(&r.path);
                if nested(m, &t) {
                    continue;
                }
                e.entry((m.clone(), t)).or_default().push(r.clone());
            }
        }
        e
    }

    /// Strongly connected components of more than one module, each sorted.
    fn cycles(&self) -> Vec<Vec<String>> {
        let edges = self.edges();
        let nodes: Vec<&String> = self.modules.keys().collect();
        let idx: BTreeMap<&String, usize> =
            nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let mut adj = vec![Vec::new(); nodes.len()];
        for (a, b) in edges.keys() {
            if let (Some(&x), Some(&y)) = (idx.get(a), idx.get(b)) {
                adj[x].push(y);
            }
        }
        let mut sccs: Vec<Vec<String>> = tarjan(&adj)
            .into_iter()
            .filter(|c| c.len() > 1)
            .map(|c| {
                let mut v: Vec<String> = c.into_iter().map(|i| nodes[i].clone()).collect();
                v.sort();
                v
            })
            .collect();
        sccs.sort();
        sccs
    }

    /// The stricter, subtree view (reported, not enforced): an edge M -> N
    /// counts as an edge between the two sibling subtrees holding M and N
    /// under their closest common ancestor, so `a::x -> b` plus `b -> a::y`
    /// is a cycle `a <-> b` here although no module-level path closes it.
    fn subtree_cycles(&self) -> Vec<Vec<String>> {
        let mut lifted = Crate::default();
        for (m, t) in self.edges().keys() {
            let ms: Vec<&str> = m.split("::").collect();
            let ts: Vec<&str> = t.split("::").collect();
            let common = ms.iter().zip(&ts).take_while(|(a, b)| a == b).count();
            let a = ms[..=common].join("::");
            let b = ts[..=common].join("::");
            lifted.modules.entry(b.clone()).or_default();
            lifted.add_ref(&a, b.split("::").map(str::to_string).collect(), "", 0);
        }
        lifted.cycles()
    }

    /// A readable report of each cycle with its lines.
    fn report(&self, cycles: &[Vec<String>]) -> String {
        let edges = self.edges();
        let mut s = String::new();
        for c in cycles {
            let set: BTreeSet<&String> = c.iter().collect();
            writeln!(s, "cycle: {}", c.join(" <-> ")).unwrap();
            for ((a, b), refs) in &edges {
                if set.contains(a) && set.contains(b) {
                    writeln!(s, "  {a} -> {b}").unwrap();
                    let mut seen = BTreeSet::new();
                    for r in refs {
                        if !seen.insert((r.file.clone(), r.line)) {
                            continue;
                        }
                        let text = self
                            .sources
                            .get(&r.file)
                            .and_then(|l| l.get(r.line - 1))
                            .map_or("", |l| l.trim());
                        writeln!(s, "    {}:{}: {}", r.file, r.line, text).unwrap();
                    }
                }
            }
        }
        s
    }
}

/// Whether one module is the other or nested in it.
fn nested(a: &str, b: &str) -> bool {
    let under = |x: &str, y: &str| x == y || x.starts_with(&format!("{y}::"));
    under(a, b) || under(b, a)
}

/// Tarjan's strongly connected components (iterative enough for a crate).
fn tarjan(adj: &[Vec<usize>]) -> Vec<Vec<usize>> {
    struct St<'a> {
        adj: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(s: &mut St<'_>, v: usize) {
        s.index[v] = Some(s.next);
        s.low[v] = s.next;
        s.next += 1;
        s.stack.push(v);
        s.on[v] = true;
        for &w in &s.adj[v] {
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on[w] => s.low[v] = s.low[v].min(iw),
                _ => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut c = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on[w] = false;
                c.push(w);
                if w == v {
                    break;
                }
            }
            s.out.push(c);
        }
    }
    let n = adj.len();
    let mut s = St {
        adj,
        index: vec![None; n],
        low: vec![0; n],
        on: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn hv_has_no_new_module_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let krate = Crate::read(&src, "lib.rs");
    assert!(
        krate.modules.len() > 40,
        "read {} modules only",
        krate.modules.len()
    );
    let cycles = krate.cycles();
    let report = krate.report(&cycles);
    println!("{} modules; cycles:\n{report}", krate.modules.len());
    println!(
        "stricter subtree view (not enforced): {:?}",
        krate.subtree_cycles()
    );
    let known: Vec<Vec<String>> = KNOWN_CYCLES
        .iter()
        .map(|c| {
            let mut v: Vec<String> = c.iter().map(|s| s.to_string()).collect();
            v.sort();
            v
        })
        .collect();
    let new: Vec<&Vec<String>> = cycles.iter().filter(|c| !known.contains(c)).collect();
    let gone: Vec<&Vec<String>> = known.iter().filter(|c| !cycles.contains(c)).collect();
    assert!(
        new.is_empty(),
        "new import cycle(s) between hv modules (DESIGN.md, module layering): {new:?}\n{report}"
    );
    assert!(
        gone.is_empty(),
        "cycle(s) in KNOWN_CYCLES no longer exist: remove them from the list: {gone:?}"
    );
}

/// A throwaway source tree under the temp dir.
struct Tree(PathBuf);

impl Tree {
    fn new(name: &str, files: &[(&str, &str)]) -> Tree {
        let dir =
            std::env::temp_dir().join(format!("hv-module-cycles-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, text) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        Tree(dir)
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A small crate with a cycle a -> b::inner -> c::deep -> a made of a `use`
/// tree, a path in code and a `super::super` use; plus nesting edges both
/// ways and decoys in comments and strings, which must not count.
fn synthetic(cyclic: bool) -> Vec<(&'static str, &'static str)> {
    vec![
        ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
        (
            "a.rs",
            "// use crate::c::deep;\nuse crate::{b::{self, inner::{X as _}}, c as _};\n\
             pub struct A;\nfn s() -> &'static str { \"crate::c::deep::D\" }\n\
             /* crate::c::deep::D */\nfn ch() -> char { '\"' }\n",
        ),
        (
            "b/mod.rs",
            "pub struct B;\npub mod inner;\nuse self::inner::X;\n",
        ),
        (
            "b/inner.rs",
            "use super::*;\npub struct X;\nfn f() { let _ = crate::c::deep::D; }\n",
        ),
        (
            "c.rs",
            if cyclic {
                "pub struct C;\npub mod deep {\n    pub struct D;\n    use super::super::a as _;\n}\n"
            } else {
                "pub struct C;\npub mod deep {\n    pub struct D;\n    use super::C as _;\n}\n"
            },
        ),
    ]
}

#[test]
fn checker_finds_a_cycle_through_use_code_paths_and_super() {
    let t = Tree::new("cyclic", &synthetic(true));
    let k = Crate::read(&t.0, "lib.rs");
    let cycles = k.cycles();
    assert_eq!(
        cycles,
        vec![vec![
            "crate::a".to_string(),
            "crate::b::inner".into(),
            "crate::c::deep".into()
        ]]
    );
    let report = k.report(&cycles);
    println!("{report}");
    assert!(
        report.contains("crate::c::deep -> crate::a\n    c.rs:4: use super::super::a as _;"),
        "{report}"
    );
    assert!(
        report.contains("crate::b::inner -> crate::c::deep\n    b/inner.rs:3:"),
        "{report}"
    );
    assert!(
        report.contains("crate::a -> crate::b::inner\n    a.rs:2:"),
        "{report}"
    );
    // The decoys on lines 1, 4 and 5 of a.rs are not references.
    assert!(
        !report.contains("a.rs:1:") && !report.contains("a.rs:4:") && !report.contains("a.rs:5:"),
        "{report}"
    );
}

#[test]
fn checker_finds_no_cycle_in_an_acyclic_tree() {
    let t = Tree::new("acyclic", &synthetic(false));
    let k = Crate::read(&t.0, "lib.rs");
    // The nesting edges are there (b -> b::inner, b::inner -> b, c::deep -> c) ...
    let kr = &k;
    let all: Vec<(String, String)> = k
        .modules
        .iter()
        .flat_map(|(m, md)| md.refs.iter().map(move |r| (m.clone(), kr.target(&r.path))))
        .collect();
    for e in [
        ("crate::b", "crate::b::inner"),
        ("crate::b::inner", "crate::b"),
        ("crate::c::deep", "crate::c"),
    ] {
        assert!(
            all.contains(&(e.0.to_string(), e.1.to_string())),
            "{e:?} in {all:?}"
        );
    }
    // ... and are no cycle.
    assert_eq!(k.cycles(), Vec::<Vec<String>>::new());
}

#[test]
fn stripping_keeps_lines_and_drops_literals() {
    let t =
        tokens("a // crate::x\n/* crate::y\n */ b \"crate::z\" r#\"crate::w\"# 'c' '\\n' x<'a>\nc");
    let words: Vec<(&str, usize)> = t.iter().map(|t| (t.text.as_str(), t.line)).collect();
    assert!(
        words.contains(&("a", 1)) && words.contains(&("b", 3)) && words.contains(&("c", 4)),
        "{words:?}"
    );
    assert!(!words.iter().any(|(w, _)| w.contains("crate")), "{words:?}");
    assert!(
        words.contains(&("x", 3)) && words.contains(&("'", 3)),
        "{words:?}"
    );
}

#[test]
fn checker_follows_names_bound_by_use() {
    // a -> b::inner only through `b::inner::g()` after `use crate::b;`; a's
    // inline test module reaches b::inner through the name its parent bound.
    let t = Tree::new(
        "alias",
        &[
            ("lib.rs", "pub mod a;\npub mod b;\n"),
            (
                "a.rs",
                "use crate::b;\nfn f() { b::inner::g(); }\n\
                 mod tests {\n    use super::*;\n    fn t() { b::inner::g(); }\n}\n",
            ),
            (
                "b.rs",
                "pub mod inner {\n    pub fn g() {}\n    use crate::a as _;\n}\n",
            ),
        ],
    );
    let k = Crate::read(&t.0, "lib.rs");
    assert_eq!(
        k.cycles(),
        vec![vec!["crate::a".to_string(), "crate::b::inner".into()]]
    );
    let report = k.report(&k.cycles());
    assert!(
        report.contains("a.rs:2: fn f() { b::inner::g(); }"),
        "{report}"
    );
    let edges = k.edges();
    assert!(
        edges.contains_key(&("crate::a::tests".to_string(), "crate::b::inner".to_string())),
        "{edges:?}"
    );
}

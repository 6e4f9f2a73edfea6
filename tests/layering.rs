//! The source layout's one-way dependencies, checked: every `crate::`, `super::` and `self::`
//! path in `src/` (outside `#[cfg(test)]`) is an edge from the file it is written in to the
//! module it names. In each folder the files (a subfolder counts as one node, `mod.rs` as
//! the folder's own node) must form no cycle, and the top-level folders may use only the
//! layers below them, as `src/lib.rs` documents.
//!
//! A folder's `mod.rs` may declare and re-export its children (`pub mod x; pub use x::T;`)
//! without that counting as a use: a re-export is the folder's façade. A path through the
//! façade (`super::T`) counts as a use of the file that defines `T`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

type ModPath = Vec<String>;

/// What each top-level module may use (besides itself), in layer order: the table in
/// `src/lib.rs`'s module doc, which is the one place the layering is written down.
fn layers() -> Vec<(String, Vec<String>)> {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let rows: Vec<(String, Vec<String>)> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("//! | `"))
        .filter_map(|l| {
            let (name, rest) = l.split_once("` | ")?;
            let (uses, _) = rest.split_once(" | ")?;
            let uses = uses
                .split(',')
                .map(|u| u.trim().to_string())
                .filter(|u| !u.is_empty() && u != "(nothing)")
                .collect();
            Some((name.to_string(), uses))
        })
        .collect();
    assert!(rows.len() >= 10, "no layer table found in src/lib.rs");
    rows
}

struct File {
    module: ModPath,
    syntax: syn::File,
}

fn module_of(src: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg") && {
            let mut test = false;
            let _ = a.parse_nested_meta(|m| {
                test |= m.path.is_ident("test");
                Ok(())
            });
            test
        }
    })
}

/// Every module path a file names, resolved to an absolute path (item names included: the
/// caller trims them to a module).
struct Refs<'a> {
    module: &'a [String],
    /// Every module of the crate: a path that starts with a child module's name
    /// (`host::HostConfig` in collect/mod.rs) names that child.
    modules: &'a BTreeSet<ModPath>,
    out: Vec<ModPath>,
    /// Inside a `pub mod`/`pub use` of a mod.rs: not a use.
    in_facade: bool,
}

impl Refs<'_> {
    fn resolve(&self, segs: &[String]) -> Option<ModPath> {
        let first = segs.first()?;
        let mut base: ModPath = match first.as_str() {
            "crate" => Vec::new(),
            "self" => self.module.to_vec(),
            "super" => self.module.to_vec(),
            child => {
                let mut m = self.module.to_vec();
                m.push(child.to_string());
                if !self.modules.contains(&m) {
                    return None;
                }
                self.module.to_vec()
            }
        };
        let mut rest = if matches!(first.as_str(), "crate" | "self" | "super") {
            &segs[1..]
        } else {
            segs
        };
        if first == "super" {
            base.pop();
        }
        while rest.first().is_some_and(|s| s == "super") {
            base.pop();
            rest = &rest[1..];
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }

    fn push(&mut self, segs: &[String]) {
        if self.in_facade {
            return;
        }
        if let Some(p) = self.resolve(segs) {
            self.out.push(p);
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let mut segs = prefix.clone();
                if n.ident != "self" {
                    segs.push(n.ident.to_string());
                }
                self.push(&segs);
            }
            syn::UseTree::Rename(r) => {
                let mut segs = prefix.clone();
                if r.ident != "self" {
                    segs.push(r.ident.to_string());
                }
                self.push(&segs);
            }
            syn::UseTree::Glob(_) => self.push(prefix),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for Refs<'_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs = match item {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Use(u) => &u.attrs,
            syn::Item::Struct(s) => &s.attrs,
            syn::Item::Enum(e) => &e.attrs,
            syn::Item::Const(c) => &c.attrs,
            syn::Item::Static(s) => &s.attrs,
            _ => &Vec::new(),
        };
        if is_cfg_test(attrs) {
            return;
        }
        syn::visit::visit_item(self, item);
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        let facade = matches!(u.vis, syn::Visibility::Public(_));
        let prev = self.in_facade;
        self.in_facade = facade;
        self.use_tree(&mut Vec::new(), &u.tree);
        self.in_facade = prev;
    }

    // `pub(crate)`, `pub(super)`: a visibility names no dependency.
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segs: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        self.push(&segs);
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        // Paths inside macro calls (`format!`, `matches!`, ...) are tokens to syn; read the
        // `crate::a::b` / `super::x` sequences out of them.
        let tokens: Vec<proc_macro2::TokenTree> = flatten(m.tokens.clone());
        let mut i = 0;
        while i < tokens.len() {
            if let proc_macro2::TokenTree::Ident(id) = &tokens[i] {
                let s = id.to_string();
                if s == "crate" || s == "super" || s == "self" {
                    let mut segs = vec![s];
                    let mut j = i + 1;
                    while j + 2 < tokens.len() + 1 {
                        let colons = matches!((&tokens.get(j), &tokens.get(j + 1)),
                            (Some(proc_macro2::TokenTree::Punct(a)), Some(proc_macro2::TokenTree::Punct(b)))
                            if a.as_char() == ':' && b.as_char() == ':');
                        match (colons, tokens.get(j + 2)) {
                            (true, Some(proc_macro2::TokenTree::Ident(next))) => {
                                segs.push(next.to_string());
                                j += 3;
                            }
                            _ => break,
                        }
                    }
                    if segs.len() > 1 {
                        self.push(&segs);
                    }
                    i = j;
                    continue;
                }
            }
            i += 1;
        }
        syn::visit::visit_macro(self, m);
    }
}

fn flatten(ts: proc_macro2::TokenStream) -> Vec<proc_macro2::TokenTree> {
    let mut out = Vec::new();
    for t in ts {
        match t {
            proc_macro2::TokenTree::Group(g) => out.extend(flatten(g.stream())),
            other => out.push(other),
        }
    }
    out
}

/// Names a mod.rs re-exports, by the child they come from: `pub use child::{A, B}`.
fn reexports(file: &File) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for item in &file.syntax.items {
        let syn::Item::Use(u) = item else { continue };
        if !matches!(u.vis, syn::Visibility::Public(_)) {
            continue;
        }
        fn walk(t: &syn::UseTree, prefix: &mut Vec<String>, out: &mut BTreeMap<String, String>) {
            match t {
                syn::UseTree::Path(p) => {
                    prefix.push(p.ident.to_string());
                    walk(&p.tree, prefix, out);
                    prefix.pop();
                }
                syn::UseTree::Name(n) => {
                    if let Some(child) = prefix.iter().find(|s| *s != "self") {
                        out.insert(n.ident.to_string(), child.clone());
                    }
                }
                syn::UseTree::Rename(r) => {
                    if let Some(child) = prefix.iter().find(|s| *s != "self") {
                        out.insert(r.rename.to_string(), child.clone());
                    }
                }
                syn::UseTree::Glob(_) => {}
                syn::UseTree::Group(g) => {
                    for t in &g.items {
                        walk(t, prefix, out);
                    }
                }
            }
        }
        walk(&u.tree, &mut Vec::new(), &mut out);
    }
    out
}

/// The graph: folder → (node → nodes it uses). A node is a file's name within its folder
/// (`mod` for the folder's mod.rs).
type Graphs = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn graphs() -> Graphs {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    let files: Vec<File> = paths
        .iter()
        .filter(|p| !p.ends_with("main.rs"))
        .map(|p| File {
            module: module_of(&src, p),
            syntax: syn::parse_file(&std::fs::read_to_string(p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        })
        .collect();
    let modules: BTreeSet<ModPath> = files.iter().map(|f| f.module.clone()).collect();
    let facades: BTreeMap<ModPath, BTreeMap<String, String>> = files
        .iter()
        .map(|f| (f.module.clone(), reexports(f)))
        .collect();

    let mut graphs: Graphs = BTreeMap::new();
    for f in &files {
        let mut refs = Refs {
            module: &f.module,
            modules: &modules,
            out: Vec::new(),
            in_facade: false,
        };
        refs.visit_file(&f.syntax);
        for target in refs.out {
            // The longest prefix that is a module; the rest is an item (or nothing).
            let Some(len) = (0..=target.len())
                .rev()
                .find(|&n| modules.contains(&target[..n]))
            else {
                continue;
            };
            let (tmod, item) = (&target[..len], target.get(len));
            let common = f
                .module
                .iter()
                .zip(tmod)
                .take_while(|(a, b)| a == b)
                .count();
            let folder = f.module[..common].join("::");
            let from = f
                .module
                .get(common)
                .cloned()
                .unwrap_or_else(|| "mod".into());
            let to = match tmod.get(common) {
                Some(child) => child.clone(),
                // An item of the folder's mod.rs itself, or one it re-exports from a child.
                None => match item.and_then(|i| facades[&tmod.to_vec()].get(i)) {
                    Some(child) => child.clone(),
                    None => "mod".into(),
                },
            };
            if std::env::var_os("LAYERING_DEBUG").is_some_and(|v| v == folder.as_str()) {
                println!("{:?} -> {target:?} ({from} -> {to})", f.module);
            }
            if from != to {
                graphs
                    .entry(folder)
                    .or_default()
                    .entry(from)
                    .or_default()
                    .insert(to);
            }
        }
    }
    graphs
}

fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn dfs(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = stack.iter().position(|s| s == m).unwrap();
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = dfs(m, g, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0
            && let Some(c) = dfs(n, g, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_import_cycles_in_any_folder() {
    let mut cycles = Vec::new();
    for (folder, g) in graphs() {
        if std::env::var_os("LAYERING_PRINT").is_some() {
            println!("{folder}: {g:?}");
        }
        if let Some(c) = find_cycle(&g) {
            let folder = if folder.is_empty() { "src" } else { &folder };
            cycles.push(format!("{folder}: {}", c.join(" -> ")));
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn top_level_folders_use_only_lower_layers() {
    let layers = layers();
    // The table itself is ordered: a layer names only layers listed before it.
    for (i, (name, uses)) in layers.iter().enumerate() {
        for u in uses {
            let pos = layers.iter().position(|(n, _)| n == u);
            assert!(
                pos.is_some_and(|p| p < i),
                "src/lib.rs: {name} may use {u}, which is not a lower layer"
            );
        }
    }
    let allowed: BTreeMap<&str, &Vec<String>> =
        layers.iter().map(|(n, u)| (n.as_str(), u)).collect();
    let g = graphs();
    let top = g.get("").cloned().unwrap_or_default();
    // The graph is not empty: edges that must exist are seen.
    for (from, to) in [
        ("daemon", "config"),
        ("config", "collect"),
        ("rules", "promql"),
    ] {
        assert!(
            top.get(from).is_some_and(|t| t.contains(to)),
            "the checker does not see {from} -> {to}: {top:?}"
        );
    }
    let mut wrong = Vec::new();
    for (from, tos) in &top {
        let Some(ok) = allowed.get(from.as_str()) else {
            wrong.push(format!("{from} is not in the layer table"));
            continue;
        };
        for to in tos {
            if !ok.contains(to) {
                wrong.push(format!("{from} uses {to}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "layering violations:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_checker_sees_a_cycle() {
    // A checker that cannot fail proves nothing: a two-node and a three-node cycle.
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("a".into());
    assert!(find_cycle(&g).is_some());
    g.clear();
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        g.entry(a.into()).or_default().insert(b.into());
    }
    assert_eq!(find_cycle(&g).unwrap().len(), 4);
    g.remove("c");
    assert!(find_cycle(&g).is_none());
}

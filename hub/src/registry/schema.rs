//! A skill's `args_schema`: checked and compiled once at load, so that no
//! schema and no request can make validation overflow a stack, run away, or
//! panic on the hub's async thread.
//!
//! The validator (jsonschema-valid) recurses once per subschema and follows
//! `$ref`s without a depth limit, and a few of its keywords unwrap numbers
//! that the draft-7 metaschema lets through. So before a schema is accepted:
//! - its document is bounded ([`MAX_JSON_DEPTH`], [`MAX_SCHEMA_VALUES`],
//!   [`MAX_POINTER_BYTES`]);
//! - every `$ref` is a local JSON pointer (`#`, `#/definitions/a`) to a schema
//!   in the same document: remote refs and `$id` are refused, as a skill's
//!   schema must be self-contained;
//! - **no `$ref` may lead back to itself, directly or through other refs** —
//!   not even a recursion that consumes instance depth (a tree of `children`)
//!   and so would terminate: its depth and work would then be set by each
//!   request, not by the schema, and could not be bounded at load;
//! - with every ref followed, the subschemas nest at most [`MAX_SCHEMA_DEPTH`]
//!   deep and number at most [`MAX_EXPANDED_SUBSCHEMAS`] (a bound on the work
//!   per instance value);
//! - numbers the validator would unwrap are rewritten to the form it expects
//!   (`multipleOf: 3` -> `3.0`, `maxLength: 2.0` -> `2`), patterns are short.
//!
//! Requests are bounded by the same check: an `args` value nested deeper
//! than [`MAX_ARGS_DEPTH`] is refused before validation.

use std::collections::HashMap;
use std::sync::Arc;

use hark_skill_sdk::Violation;
use serde_json::{Map, Value};

/// Deepest nesting of the schema document, in JSON values.
pub const MAX_JSON_DEPTH: usize = 64;
/// Most JSON values in the schema document.
pub const MAX_SCHEMA_VALUES: usize = 4096;
/// Deepest nesting of subschemas with every `$ref` followed: the validator's
/// recursion depth.
pub const MAX_SCHEMA_DEPTH: usize = 32;
/// Most subschemas with every `$ref` expanded: what one instance value can
/// be checked against.
pub const MAX_EXPANDED_SUBSCHEMAS: usize = 256;
/// Longest path to a value in the schema document, as a JSON pointer.
pub const MAX_POINTER_BYTES: usize = 1024;
/// Longest `pattern` or `patternProperties` key; the validator compiles them
/// for every request.
pub const MAX_PATTERN_BYTES: usize = 512;
/// Deepest `args` value validated (serde_json already stops a payload at 128).
pub const MAX_ARGS_DEPTH: usize = 64;

/// A compiled JSON Schema (draft 7) for one skill's `args`.
pub struct ArgsSchema {
    /// The validator, built once. It borrows `checked`, so it is declared
    /// (and dropped) first.
    compiled: jsonschema_valid::Config<'static>,
    /// The schema the validator runs: `schema` with its numbers normalised.
    /// Shared and never mutated, so its address is stable for `compiled`.
    #[cfg_attr(not(test), allow(dead_code))]
    checked: Arc<Value>,
    /// The schema as the manifest wrote it.
    schema: Value,
}

impl std::fmt::Debug for ArgsSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArgsSchema")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl ArgsSchema {
    /// Checks the schema's size and refs (see the module docs), then against
    /// the draft-7 metaschema, and compiles it. The error says what is wrong
    /// and where in the schema.
    pub fn compile(schema: Value) -> Result<ArgsSchema, String> {
        check_document(&schema)?;
        // Bounded by `check_document`: the metaschema recurses once per level.
        let config = jsonschema_valid::Config::from_schema(
            &schema,
            Some(jsonschema_valid::schemas::Draft::Draft7),
        )
        .map_err(|e| e.msg.clone())?;
        if let Err(errors) = config.validate_schema() {
            let problems: Vec<String> = errors
                .map(|e| {
                    format!(
                        "{} at {}",
                        e.msg,
                        super::violations::pointer(&e.instance_path)
                    )
                })
                .collect();
            return Err(problems.join("; "));
        }
        drop(config);

        let fixes = Analysis::run(&schema)?;
        let mut checked = schema.clone();
        for (at, value) in fixes {
            if let Some(slot) = checked.pointer_mut(&at) {
                *slot = value;
            }
        }
        let checked = Arc::new(checked);
        // SAFETY: the reference points into the heap allocation owned by
        // `checked`, which lives in the same `ArgsSchema` as `compiled`, is
        // never mutated (no `get_mut`, no interior mutability in `Value`) and
        // never moves (moving the `Arc` moves only the pointer). `compiled`
        // is the only holder of the reference, is declared before `checked`
        // and so is dropped first, and hands out only borrows of `&self`.
        let root: &'static Value = unsafe { &*Arc::as_ptr(&checked) };
        let compiled = jsonschema_valid::Config::from_schema(
            root,
            Some(jsonschema_valid::schemas::Draft::Draft7),
        )
        .map_err(|e| e.msg.clone())?;
        Ok(ArgsSchema {
            compiled,
            checked,
            schema,
        })
    }

    /// Every violation of `args`, each with its JSON pointer into the request.
    pub fn validate(&self, args: &Value) -> Result<(), Vec<Violation>> {
        if let Some(at) = deeper_than(args, MAX_ARGS_DEPTH) {
            return Err(vec![Violation {
                pointer: format!("/args{at}"),
                message: format!("nested deeper than {MAX_ARGS_DEPTH} levels"),
            }]);
        }
        match self.compiled.validate(args) {
            Ok(()) => Ok(()),
            Err(errors) => Err(errors.flat_map(super::violations::explain).collect()),
        }
    }

    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// The schema the validator runs (numbers normalised).
    #[cfg(test)]
    fn checked(&self) -> &Value {
        &self.checked
    }
}

/// The pointer to the first place in `value` nested deeper than `max`, if any.
fn deeper_than(value: &Value, max: usize) -> Option<String> {
    depth_first(value, |_, path| {
        if path.len() > max {
            Err(joined(path))
        } else {
            Ok(())
        }
    })
    .err()
}

/// The whole document, before the metaschema (which recurses) sees it:
/// bounded depth and size, no `$id` (which would change what a `$ref`
/// resolves to).
fn check_document(schema: &Value) -> Result<(), String> {
    let mut values = 0;
    depth_first(schema, |value, path| {
        values += 1;
        if values > MAX_SCHEMA_VALUES {
            return Err(format!(
                "has more than {MAX_SCHEMA_VALUES} values; a skill's args schema must be smaller"
            ));
        }
        if path.len() >= MAX_JSON_DEPTH {
            return Err(format!(
                "nested deeper than {MAX_JSON_DEPTH} levels at {}",
                display(&joined(path))
            ));
        }
        if path.iter().map(|s| s.len() + 1).sum::<usize>() > MAX_POINTER_BYTES {
            return Err(format!(
                "has a path longer than {MAX_POINTER_BYTES} bytes (keys too long?) at {}…",
                shorten(&display(&joined(path)))
            ));
        }
        if let Some(Value::String(id)) = value.get("$id") {
            return Err(format!(
                "$id \"{}\" at {}: a skill's schema is one document without ids; \
                 refer to its parts with local refs such as \"#/definitions/name\"",
                shorten(id),
                display(&joined(path))
            ));
        }
        Ok(())
    })
}

/// Calls `visit` on every value in `root`, parents first, with the path to
/// it (escaped pointer segments). Iterative, with memory for one path only:
/// `root` may be as deep and as wide as its parser allowed.
fn depth_first<'a>(
    root: &'a Value,
    mut visit: impl FnMut(&'a Value, &[String]) -> Result<(), String>,
) -> Result<(), String> {
    enum Level<'a> {
        Array(std::iter::Enumerate<std::slice::Iter<'a, Value>>),
        Object(serde_json::map::Iter<'a>),
    }
    fn level(value: &Value) -> Option<Level<'_>> {
        match value {
            Value::Array(items) => Some(Level::Array(items.iter().enumerate())),
            Value::Object(map) => Some(Level::Object(map.iter())),
            _ => None,
        }
    }
    let mut path: Vec<String> = Vec::new();
    visit(root, &path)?;
    // Invariant: `path` names the container whose iterator is on top.
    let mut stack: Vec<Level<'a>> = level(root).into_iter().collect();
    while let Some(top) = stack.last_mut() {
        let next = match top {
            Level::Array(items) => items.next().map(|(i, v)| (i.to_string(), v)),
            Level::Object(entries) => entries.next().map(|(k, v)| (escape(k), v)),
        };
        match next {
            Some((segment, value)) => {
                path.push(segment);
                visit(value, &path)?;
                match level(value) {
                    Some(children) => stack.push(children),
                    None => {
                        path.pop();
                    }
                }
            }
            None => {
                stack.pop();
                path.pop();
            }
        }
    }
    Ok(())
}

fn joined(path: &[String]) -> String {
    path.iter().map(|s| format!("/{s}")).collect()
}

/// One schema a `$ref` points at (or the root), as the validator will
/// descend it, not following refs.
#[derive(Debug)]
struct Target {
    /// JSON pointer into the document ("" for the root).
    at: String,
    /// Levels of subschemas in it, counting itself.
    depth: usize,
    /// Subschemas in it, counting itself and each `$ref` object.
    count: usize,
    /// The refs in it: the level the `$ref` object sits at, and its target.
    refs: Vec<(usize, usize)>,
}

/// The `$ref` graph of a schema, with each target's own size.
#[derive(Debug, Default)]
struct Analysis {
    targets: Vec<Target>,
    index: HashMap<String, usize>,
    /// Rewrites the validator needs: (pointer, new value).
    fixes: Vec<(String, Value)>,
}

impl Analysis {
    /// Checks the refs, depth and size of `root` (already bounded by
    /// [`check_document`]) and returns the rewrites its numbers need.
    fn run(root: &Value) -> Result<Vec<(String, Value)>, String> {
        let mut analysis = Analysis::default();
        analysis.target(root, String::new())?;
        // `definitions` are checked even when nothing refers to them, so a
        // cycle is refused where it is written, not when first used.
        if let Some(Value::Object(definitions)) = root.get("definitions") {
            for key in definitions.keys() {
                analysis.target(root, format!("/definitions/{}", escape(key)))?;
            }
        }
        let mut next = 0;
        while next < analysis.targets.len() {
            let at = analysis.targets[next].at.clone();
            let value = root.pointer(&at).expect("targets resolve");
            let mut target = Target {
                at: at.clone(),
                depth: 0,
                count: 0,
                refs: Vec::new(),
            };
            analysis.walk(root, value, &at, 1, &mut target)?;
            analysis.targets[next] = target;
            next += 1;
        }
        let order = analysis.topological_order()?;
        let mut depth = vec![0usize; analysis.targets.len()];
        let mut count = vec![0usize; analysis.targets.len()];
        for &t in &order {
            let target = &analysis.targets[t];
            depth[t] = target
                .refs
                .iter()
                .map(|&(level, to)| level.saturating_add(depth[to]))
                .fold(target.depth, usize::max);
            count[t] = target
                .refs
                .iter()
                .fold(target.count, |sum, &(_, to)| sum.saturating_add(count[to]));
            let name = display(&target.at);
            if depth[t] > MAX_SCHEMA_DEPTH {
                return Err(format!(
                    "{name} nests subschemas {} deep with its refs followed; the limit is {MAX_SCHEMA_DEPTH}",
                    depth[t]
                ));
            }
            if count[t] > MAX_EXPANDED_SUBSCHEMAS {
                return Err(format!(
                    "{name} expands to {} subschemas with its refs followed; the limit is {MAX_EXPANDED_SUBSCHEMAS}",
                    count[t]
                ));
            }
        }
        Ok(analysis.fixes)
    }

    /// The id of the target at `at`, registering it on first sight.
    fn target(&mut self, root: &Value, at: String) -> Result<usize, String> {
        if let Some(&id) = self.index.get(&at) {
            return Ok(id);
        }
        match root.pointer(&at) {
            Some(Value::Object(_) | Value::Bool(_)) => {}
            Some(_) => {
                return Err(format!(
                    "$ref \"{}\" points at something that is not a schema (an object or a boolean)",
                    display(&at)
                ));
            }
            None => {
                return Err(format!(
                    "$ref \"{}\" points at nothing in the schema",
                    display(&at)
                ));
            }
        }
        let id = self.targets.len();
        self.targets.push(Target {
            at: at.clone(),
            depth: 0,
            count: 0,
            refs: Vec::new(),
        });
        self.index.insert(at, id);
        Ok(id)
    }

    /// Walks `schema` (at `at`, at subschema `level`) as the validator
    /// descends it. Recursion is bounded by the document's depth.
    fn walk(
        &mut self,
        root: &Value,
        schema: &Value,
        at: &str,
        level: usize,
        target: &mut Target,
    ) -> Result<(), String> {
        target.count += 1;
        target.depth = target.depth.max(level);
        let Value::Object(map) = schema else {
            return Ok(());
        };
        if let Some(reference) = map.get("$ref") {
            // The validator follows the ref and ignores the keywords beside it.
            let pointer = local_pointer(reference)
                .map_err(|why| format!("$ref at {}: {why}", display(at)))?;
            let to = self
                .target(root, pointer)
                .map_err(|e| format!("{e} (the $ref at {})", display(at)))?;
            target.refs.push((level, to));
            return Ok(());
        }
        self.normalise(map, at)?;
        for (keyword, value) in map {
            let here = format!("{at}/{}", escape(keyword));
            match keyword.as_str() {
                "additionalItems"
                | "additionalProperties"
                | "contains"
                | "propertyNames"
                | "not"
                | "if"
                | "then"
                | "else" => {
                    self.walk(root, value, &here, level + 1, target)?;
                }
                "items" => match value {
                    Value::Array(items) => {
                        for (i, item) in items.iter().enumerate() {
                            self.walk(root, item, &format!("{here}/{i}"), level + 1, target)?;
                        }
                    }
                    _ => self.walk(root, value, &here, level + 1, target)?,
                },
                "allOf" | "anyOf" | "oneOf" => {
                    if let Value::Array(items) = value {
                        for (i, item) in items.iter().enumerate() {
                            self.walk(root, item, &format!("{here}/{i}"), level + 1, target)?;
                        }
                    }
                }
                "properties" | "patternProperties" | "dependencies" => {
                    if let Value::Object(entries) = value {
                        for (key, item) in entries {
                            if keyword == "patternProperties" && key.len() > MAX_PATTERN_BYTES {
                                return Err(pattern_too_long(&here, key.len()));
                            }
                            if item.is_object() || item.is_boolean() {
                                let there = format!("{here}/{}", escape(key));
                                self.walk(root, item, &there, level + 1, target)?;
                            }
                        }
                    }
                }
                "pattern" => {
                    if let Value::String(p) = value
                        && p.len() > MAX_PATTERN_BYTES
                    {
                        return Err(pattern_too_long(&here, p.len()));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Numbers in the form the validator expects: it unwraps `as_u64()` on
    /// the length and count keywords (`2.0` passes the metaschema as an
    /// integer) and, for an integer `multipleOf`, on the instance (so `-1` or
    /// `1.5` would panic).
    fn normalise(&mut self, map: &Map<String, Value>, at: &str) -> Result<(), String> {
        for keyword in [
            "minLength",
            "maxLength",
            "minItems",
            "maxItems",
            "minProperties",
            "maxProperties",
        ] {
            if let Some(Value::Number(n)) = map.get(keyword)
                && n.as_u64().is_none()
            {
                let whole = n.as_f64().filter(|f| *f >= 0.0 && f.fract() == 0.0);
                let Some(f) = whole else {
                    return Err(format!(
                        "{keyword} at {} must be a whole number, not {n}",
                        display(at)
                    ));
                };
                // Beyond u64 no instance can reach it anyway.
                let fixed = if f >= u64::MAX as f64 {
                    u64::MAX
                } else {
                    f as u64
                };
                self.fixes
                    .push((format!("{at}/{keyword}"), Value::from(fixed)));
            }
        }
        if let Some(Value::Number(n)) = map.get("multipleOf")
            && !n.is_f64()
        {
            let f = n.as_f64().unwrap_or(f64::NAN);
            let Some(fixed) = serde_json::Number::from_f64(f).filter(|_| f > 0.0) else {
                return Err(format!(
                    "multipleOf at {} must be a number above 0, not {n}",
                    display(at)
                ));
            };
            self.fixes
                .push((format!("{at}/multipleOf"), Value::Number(fixed)));
        }
        Ok(())
    }

    /// The targets in an order where every target comes after those it
    /// refers to; or the cycle found, as the refs that make it. Iterative.
    fn topological_order(&self) -> Result<Vec<usize>, String> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Open,
            Done,
        }
        let mut mark = vec![Mark::New; self.targets.len()];
        let mut order = Vec::with_capacity(self.targets.len());
        for start in 0..self.targets.len() {
            if mark[start] != Mark::New {
                continue;
            }
            // (target, next ref to look at)
            let mut path: Vec<(usize, usize)> = vec![(start, 0)];
            mark[start] = Mark::Open;
            while let Some(&mut (t, ref mut i)) = path.last_mut() {
                if let Some(&(_, to)) = self.targets[t].refs.get(*i) {
                    *i += 1;
                    match mark[to] {
                        Mark::New => {
                            mark[to] = Mark::Open;
                            path.push((to, 0));
                        }
                        Mark::Open => {
                            let from = path.iter().position(|&(p, _)| p == to).unwrap_or(0);
                            let cycle: Vec<String> = path[from..]
                                .iter()
                                .map(|&(p, _)| display(&self.targets[p].at))
                                .chain(std::iter::once(display(&self.targets[to].at)))
                                .collect();
                            return Err(format!(
                                "$ref cycle {}: a schema may not refer to itself, directly or \
                                 through other refs (recursive schemas are refused, as their \
                                 depth would be set by each request)",
                                cycle.join(" -> ")
                            ));
                        }
                        Mark::Done => {}
                    }
                } else {
                    mark[t] = Mark::Done;
                    order.push(t);
                    path.pop();
                }
            }
        }
        Ok(order)
    }
}

/// The JSON pointer a `$ref` names, if it is a local one the validator
/// resolves exactly as written: `#` plus a pointer of plain URI characters
/// (no `%`-escapes, spaces or control characters, which its URL parser would
/// rewrite or drop).
fn local_pointer(reference: &Value) -> Result<String, String> {
    let Value::String(text) = reference else {
        return Err("must be a string".into());
    };
    let Some(pointer) = text.strip_prefix('#') else {
        return Err(format!(
            "\"{}\" is not a local reference; a skill's schema must be self-contained, \
             with refs such as \"#/definitions/name\"",
            shorten(text)
        ));
    };
    if !pointer.is_empty() && !pointer.starts_with('/') {
        return Err(format!(
            "\"{}\" is not a JSON pointer; write \"#/definitions/name\"",
            shorten(text)
        ));
    }
    let plain = |c: char| c.is_ascii_alphanumeric() || "/-._~!$&'()*+,;=:@".contains(c);
    if let Some(c) = pointer.chars().find(|c| !plain(*c)) {
        return Err(format!(
            "\"{}\" contains {c:?}; a ref may use letters, digits and -._~!$&'()*+,;=:@/",
            shorten(text)
        ));
    }
    Ok(pointer.to_string())
}

fn pattern_too_long(at: &str, len: usize) -> String {
    format!(
        "a pattern at {} is {len} bytes; the limit is {MAX_PATTERN_BYTES}",
        display(at)
    )
}

/// A JSON pointer as a ref would name it: `#/properties/a`.
fn display(at: &str) -> String {
    format!("#{at}")
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn shorten(text: &str) -> String {
    let mut short: String = text.chars().take(80).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refused(schema: Value) -> String {
        match ArgsSchema::compile(schema.clone()) {
            Ok(_) => panic!("accepted {schema}"),
            Err(e) => e,
        }
    }

    /// `levels` objects nested under the property `a`, the innermost an integer.
    fn nested_schema(levels: usize) -> Value {
        let mut schema = json!({"type": "integer"});
        for _ in 0..levels {
            schema = json!({
                "type": "object",
                "properties": {"a": schema},
                "required": ["a"],
                "additionalProperties": false
            });
        }
        schema
    }

    fn nested_args(levels: usize, leaf: Value) -> Value {
        (0..levels).fold(leaf, |inner, _| json!({"a": inner}))
    }

    #[test]
    fn a_schema_that_refers_to_itself_is_refused_at_load() {
        let e = refused(json!({"$ref": "#"}));
        assert!(e.contains("$ref cycle # -> #"), "{e}");
        // Recursion through a property would end with the request's depth;
        // it is refused all the same (see the module docs).
        let e = refused(json!({
            "type": "object",
            "properties": {"children": {"type": "array", "items": {"$ref": "#"}}}
        }));
        assert!(e.contains("$ref cycle # -> #"), "{e}");
    }

    #[test]
    fn an_indirect_ref_cycle_is_refused_naming_its_refs() {
        let e = refused(json!({
            "type": "object",
            "properties": {"x": {"$ref": "#/definitions/a"}},
            "definitions": {
                "a": {"anyOf": [{"type": "string"}, {"$ref": "#/definitions/b"}]},
                "b": {"not": {"$ref": "#/definitions/a"}}
            }
        }));
        assert!(
            e.contains("#/definitions/a -> #/definitions/b -> #/definitions/a"),
            "{e}"
        );
    }

    #[test]
    fn a_cycle_in_definitions_nothing_uses_is_still_refused() {
        let e = refused(json!({
            "type": "object",
            "definitions": {"loop": {"$ref": "#/definitions/loop"}}
        }));
        assert!(e.contains("$ref cycle"), "{e}");
    }

    #[test]
    fn remote_and_unusual_refs_are_refused_with_the_reason() {
        for (reference, says) in [
            ("http://example.com/schema.json", "not a local reference"),
            ("other.json#/definitions/a", "not a local reference"),
            ("#foo", "not a JSON pointer"),
            ("#/definitions/a%20b", "contains '%'"),
            ("#/definitions/a\nb", "contains '\\n'"),
        ] {
            let e = refused(json!({
                "properties": {"x": {"$ref": reference}},
                "definitions": {"a": {"type": "string"}}
            }));
            assert!(e.contains(says), "{reference}: {e}");
            assert!(e.contains("#/properties/x"), "names where: {e}");
        }
        let e = refused(json!({"properties": {"x": {"$ref": "#/definitions/none"}}}));
        assert!(e.contains("points at nothing"), "{e}");
        let e = refused(json!({"required": ["a"], "properties": {"x": {"$ref": "#/required"}}}));
        assert!(e.contains("not a schema"), "{e}");
    }

    #[test]
    fn an_id_is_refused_as_it_would_redirect_refs() {
        let e = refused(json!({"$id": "http://example.com/s", "type": "object"}));
        assert!(e.contains("$id"), "{e}");
        let e = refused(json!({"properties": {"x": {"$id": "#x", "type": "string"}}}));
        assert!(e.contains("#/properties/x"), "{e}");
    }

    #[test]
    fn a_ref_used_twice_is_fine_and_validates_both_places() {
        let s = ArgsSchema::compile(json!({
            "type": "object",
            "properties": {
                "from": {"$ref": "#/definitions/hhmm"},
                "to": {"$ref": "#/definitions/hhmm"}
            },
            "definitions": {"hhmm": {"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$"}}
        }))
        .unwrap();
        assert!(s.validate(&json!({"from": "07:30", "to": "08:00"})).is_ok());
        let v = s.validate(&json!({"from": "07:30", "to": 8})).unwrap_err();
        assert_eq!(v[0].pointer, "/args/to", "{v:?}");
    }

    #[test]
    fn a_deep_but_legal_schema_validates_and_points_at_the_wrong_value() {
        let s = ArgsSchema::compile(nested_schema(20)).unwrap();
        assert!(s.validate(&nested_args(20, json!(7))).is_ok());
        let v = s.validate(&nested_args(20, json!("seven"))).unwrap_err();
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].pointer, format!("/args{}", "/a".repeat(20)));
        assert_eq!(v[0].message, "must be an integer, not a string");
    }

    #[test]
    fn a_schema_deeper_than_the_limit_is_refused() {
        // One JSON level per subschema, so the document itself is shallow enough.
        let items = (0..MAX_SCHEMA_DEPTH).fold(json!({}), |inner, _| json!({"items": inner}));
        let e = refused(items);
        assert!(e.contains("# nests subschemas 33 deep"), "{e}");
        // The same depth reached through refs.
        let mut definitions = Map::new();
        for i in 0..12 {
            let next = if i == 11 {
                json!({"type": "integer"})
            } else {
                json!({"$ref": format!("#/definitions/d{}", i + 1)})
            };
            definitions.insert(
                format!("d{i}"),
                json!({"properties": {"a": {"properties": {"b": next}}}}),
            );
        }
        let e = refused(json!({"$ref": "#/definitions/d0", "definitions": definitions}));
        assert!(e.contains("with its refs followed"), "{e}");
    }

    #[test]
    fn a_ref_fan_out_that_expands_exponentially_is_refused() {
        // Ten levels of two refs each: 2^10 subschemas for every value.
        let mut definitions = Map::new();
        for i in 0..10 {
            let next = format!("#/definitions/d{}", i + 1);
            definitions.insert(
                format!("d{i}"),
                json!({"allOf": [{"$ref": next}, {"$ref": next}]}),
            );
        }
        definitions.insert("d10".into(), json!({"type": "integer"}));
        let e = refused(json!({"$ref": "#/definitions/d0", "definitions": definitions}));
        assert!(e.contains("subschemas with its refs followed"), "{e}");
    }

    #[test]
    fn a_huge_or_deep_document_is_refused_before_the_metaschema_recurses() {
        let wide: Vec<Value> = (0..MAX_SCHEMA_VALUES).map(|i| json!(i)).collect();
        let e = refused(json!({"enum": wide}));
        assert!(e.contains("more than 4096 values"), "{e}");
        let deep = (0..100).fold(json!(1), |inner, _| json!([inner]));
        let e = refused(json!({"const": deep}));
        assert!(e.contains("nested deeper than 64 levels"), "{e}");
        let e = refused(json!({"properties": {"k".repeat(2000): {}}}));
        assert!(e.contains("path longer than"), "{e}");
        let e = refused(json!({"pattern": "a".repeat(MAX_PATTERN_BYTES + 1)}));
        assert!(e.contains("a pattern at #/pattern"), "{e}");
    }

    /// What the normalisation guards against: the validator itself panics
    /// (and the release hub aborts) on these, with schemas the metaschema
    /// accepts. If a new jsonschema-valid fixes this, the rewrite can go.
    #[test]
    fn the_validator_alone_panics_on_integer_multiple_of_and_float_lengths() {
        let panics = |schema: Value, instance: Value| {
            std::panic::catch_unwind(move || {
                let config = jsonschema_valid::Config::from_schema(
                    &schema,
                    Some(jsonschema_valid::schemas::Draft::Draft7),
                )
                .unwrap();
                assert!(config.validate_schema().is_ok());
                let _ = config.validate(&instance).map_err(|e| e.count());
            })
            .is_err()
        };
        assert!(panics(json!({"multipleOf": 3}), json!(-3)));
        assert!(panics(json!({"multipleOf": 3}), json!(1.5)));
        assert!(panics(json!({"maxLength": 2.0}), json!("abc")));
    }

    #[test]
    fn integer_multiple_of_and_float_lengths_validate_without_panicking() {
        let s = ArgsSchema::compile(json!({
            "properties": {"n": {"multipleOf": 3}, "s": {"maxLength": 2.0, "minLength": 1e300}}
        }))
        .unwrap();
        assert_eq!(s.checked()["properties"]["n"]["multipleOf"], json!(3.0));
        assert_eq!(s.checked()["properties"]["s"]["maxLength"], json!(2));
        assert_eq!(
            s.schema()["properties"]["n"]["multipleOf"],
            json!(3),
            "as written"
        );
        assert!(s.validate(&json!({"n": -3})).is_ok());
        assert!(s.validate(&json!({"n": 9})).is_ok());
        let v = s.validate(&json!({"n": 1.5})).unwrap_err();
        assert_eq!(v[0].pointer, "/args/n");
        let v = s.validate(&json!({"n": -1})).unwrap_err();
        assert_eq!(v[0].pointer, "/args/n");
        let v = s.validate(&json!({"s": "abc"})).unwrap_err();
        assert_eq!(v[0].pointer, "/args/s");
    }

    #[test]
    fn args_nested_deeper_than_the_limit_are_invalid_with_the_place() {
        let s = ArgsSchema::compile(json!({"type": "object"})).unwrap();
        assert!(s.validate(&nested_args(MAX_ARGS_DEPTH, json!(1))).is_ok());
        let v = s
            .validate(&nested_args(MAX_ARGS_DEPTH + 1, json!({})))
            .unwrap_err();
        assert_eq!(
            v[0].pointer,
            format!("/args{}", "/a".repeat(MAX_ARGS_DEPTH + 1))
        );
        assert!(v[0].message.contains("deeper than 64"), "{v:?}");
    }

    /// The deepest schema allowed, checked at load and validated against a
    /// matching and a deep wrong request, fits in a small stack: a quarter
    /// of a tokio blocking thread's 2 MiB (it needed under 192 KiB in a
    /// debug build; the hub's async thread is the main thread, 8 MiB).
    #[test]
    fn the_deepest_legal_schema_fits_in_a_small_stack() {
        let deepest = MAX_SCHEMA_DEPTH - 1;
        let run = move || {
            let s = ArgsSchema::compile(nested_schema(deepest)).unwrap();
            assert!(s.validate(&nested_args(deepest, json!(1))).is_ok());
            assert!(s.validate(&nested_args(deepest, json!([[[[1]]]]))).is_err());
            assert!(s.validate(&nested_args(MAX_ARGS_DEPTH, json!(1))).is_err());
        };
        std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(run)
            .unwrap()
            .join()
            .expect("validation fits in 512 KiB of stack");
    }
}

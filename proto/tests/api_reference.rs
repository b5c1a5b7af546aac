//! `docs/api.md`, the API reference, is generated from the comments of `proto/sidescan/v1/*.proto`
//! (the source info in [`sidescan_proto::FILE_DESCRIPTOR_SET`], compiled by protox) and must stay
//! fresh: this test renders it and compares. Regenerate with
//! `UPDATE_API_REFERENCE=1 cargo test -p sidescan-proto --test api_reference`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::source_code_info::Location;
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto,
    FileDescriptorSet, ServiceDescriptorProto,
};

const PACKAGE: &str = "sidescan.v1";
const REGENERATE: &str = "UPDATE_API_REFERENCE=1 cargo test -p sidescan-proto --test api_reference";

// Field numbers of descriptor.proto, the steps of a SourceCodeInfo path.
const FILE_MESSAGE: i32 = 4;
const FILE_ENUM: i32 = 5;
const FILE_SERVICE: i32 = 6;
const FILE_SYNTAX: i32 = 12;
const MESSAGE_FIELD: i32 = 2;
const MESSAGE_NESTED: i32 = 3;
const MESSAGE_ENUM: i32 = 4;
const MESSAGE_ONEOF: i32 = 8;
const ENUM_VALUE: i32 = 2;
const SERVICE_METHOD: i32 = 2;

/// The comments of one file, by SourceCodeInfo path.
struct Comments {
    by_path: BTreeMap<Vec<i32>, Location>,
}

impl Comments {
    fn new(file: &FileDescriptorProto) -> Self {
        let by_path = file
            .source_code_info
            .iter()
            .flat_map(|info| info.location.iter())
            .map(|loc| (loc.path.clone(), loc.clone()))
            .collect();
        Self { by_path }
    }

    /// The leading comment of the element at `path`, with the one space after `//` removed.
    fn leading(&self, path: &[i32]) -> String {
        self.by_path
            .get(path)
            .and_then(|loc| loc.leading_comments.as_deref())
            .map(clean)
            .unwrap_or_default()
    }

    /// Detached comments of top-level elements, in source order: file-level notes.
    fn detached(&self) -> Vec<String> {
        let mut found: Vec<(i32, String)> = self
            .by_path
            .iter()
            .filter(|(path, _)| path.len() <= 2)
            .flat_map(|(_, loc)| {
                let line = loc.span.first().copied().unwrap_or(0);
                loc.leading_detached_comments
                    .iter()
                    .map(move |c| (line, clean(c)))
            })
            .collect();
        found.sort();
        found.into_iter().map(|(_, c)| c).collect()
    }
}

/// Strips the single space protobuf comments start with and trailing blank lines.
fn clean(comment: &str) -> String {
    let lines: Vec<&str> = comment
        .lines()
        .map(|l| l.strip_prefix(' ').unwrap_or(l).trim_end())
        .collect();
    lines.join("\n").trim_matches('\n').to_string()
}

/// Escapes `<`, `>` and `|` outside code spans, so that text like `Basic <base64 ...>` is not read
/// as HTML and a pipe does not end a table cell.
fn escape(text: &str, in_table: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_code = false;
    for c in text.chars() {
        match c {
            '`' => {
                in_code = !in_code;
                out.push(c);
            }
            '<' if !in_code => out.push_str("&lt;"),
            '>' if !in_code => out.push_str("&gt;"),
            '|' if in_table => out.push_str("\\|"),
            _ => out.push(c),
        }
    }
    out
}

/// A comment as a block of Markdown: kept line by line (the proto comments are written as
/// Markdown, tables included).
fn block(comment: &str) -> String {
    comment
        .lines()
        .map(|line| escape(line, false))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A comment as one table cell: lines of a paragraph joined with spaces, except list items and
/// indented lines, which start a new line (`<br>`); paragraphs separated by an empty line.
fn cell(comment: &str) -> String {
    let mut out = String::new();
    let mut blank = false;
    for line in comment.lines() {
        if line.trim().is_empty() {
            blank = true;
            continue;
        }
        if !out.is_empty() {
            if blank {
                out.push_str("<br><br>");
            } else if line.starts_with(' ') || line.starts_with("- ") {
                out.push_str("<br>");
            } else {
                out.push(' ');
            }
        }
        blank = false;
        let text = escape(line.trim(), true);
        if line.starts_with(' ') {
            out.push_str("&nbsp;&nbsp;");
        }
        out.push_str(&text);
    }
    out
}

/// The HTML anchor of a fully qualified name (`sidescan.v1.ScanRequest`).
fn anchor(full_name: &str) -> String {
    full_name.replace('.', "-").to_lowercase()
}

/// Every message and enum of the package by fully qualified name (with the leading dot), and
/// the map-entry messages among them.
struct Types {
    map_entries: BTreeMap<String, DescriptorProto>,
}

impl Types {
    fn new(files: &[&FileDescriptorProto]) -> Self {
        let mut map_entries = BTreeMap::new();
        fn walk(prefix: &str, msg: &DescriptorProto, out: &mut BTreeMap<String, DescriptorProto>) {
            let name = format!("{prefix}.{}", msg.name());
            for nested in &msg.nested_type {
                if nested.options.as_ref().and_then(|o| o.map_entry) == Some(true) {
                    out.insert(format!("{name}.{}", nested.name()), nested.clone());
                }
                walk(&name, nested, out);
            }
        }
        for file in files {
            for msg in &file.message_type {
                walk(&format!(".{}", file.package()), msg, &mut map_entries);
            }
        }
        Self { map_entries }
    }

    /// The field's type as Markdown: scalars by name, message and enum types linked when they
    /// are in the package, `map<K, V>` for map fields, `repeated` and `optional` prefixed.
    fn describe(&self, field: &FieldDescriptorProto) -> String {
        if let Some(entry) = self.map_entries.get(field.type_name()) {
            let key = entry.field.iter().find(|f| f.number() == 1);
            let value = entry.field.iter().find(|f| f.number() == 2);
            if let (Some(key), Some(value)) = (key, value) {
                return format!("map&lt;{}, {}&gt;", self.base(key), self.base(value));
            }
        }
        let base = self.base(field);
        if field.label() == Label::Repeated {
            format!("repeated {base}")
        } else if field.proto3_optional() {
            format!("optional {base}")
        } else {
            base
        }
    }

    fn base(&self, field: &FieldDescriptorProto) -> String {
        match field.r#type() {
            Type::Message | Type::Enum | Type::Group => type_link(field.type_name()),
            Type::Double => "`double`".into(),
            Type::Float => "`float`".into(),
            Type::Int64 => "`int64`".into(),
            Type::Uint64 => "`uint64`".into(),
            Type::Int32 => "`int32`".into(),
            Type::Fixed64 => "`fixed64`".into(),
            Type::Fixed32 => "`fixed32`".into(),
            Type::Bool => "`bool`".into(),
            Type::String => "`string`".into(),
            Type::Bytes => "`bytes`".into(),
            Type::Uint32 => "`uint32`".into(),
            Type::Sfixed32 => "`sfixed32`".into(),
            Type::Sfixed64 => "`sfixed64`".into(),
            Type::Sint32 => "`sint32`".into(),
            Type::Sint64 => "`sint64`".into(),
        }
    }
}

/// A type name (`.sidescan.v1.Scanner`) as a link when it is in the package, otherwise as code.
fn type_link(type_name: &str) -> String {
    let name = type_name.trim_start_matches('.');
    match name.strip_prefix(&format!("{PACKAGE}.")) {
        Some(short) => format!("[`{short}`](#{})", anchor(name)),
        None => format!("`{name}`"),
    }
}

fn heading(out: &mut String, level: usize, kind: &str, full_name: &str, short: &str) {
    writeln!(out, "<a id=\"{}\"></a>\n", anchor(full_name)).unwrap();
    writeln!(out, "{} {kind} `{short}`\n", "#".repeat(level)).unwrap();
}

fn paragraph(out: &mut String, comment: &str) {
    if !comment.is_empty() {
        writeln!(out, "{}\n", block(comment)).unwrap();
    }
}

fn render_service(out: &mut String, file: &FileDescriptorProto, c: &Comments, i: usize) {
    let svc: &ServiceDescriptorProto = &file.service[i];
    let full = format!("{}.{}", file.package(), svc.name());
    let path = vec![FILE_SERVICE, i as i32];
    heading(out, 3, "Service", &full, svc.name());
    paragraph(out, &c.leading(&path));
    for (j, method) in svc.method.iter().enumerate() {
        let mut mpath = path.clone();
        mpath.extend([SERVICE_METHOD, j as i32]);
        let method_full = format!("{full}.{}", method.name());
        writeln!(out, "<a id=\"{}\"></a>\n", anchor(&method_full)).unwrap();
        writeln!(out, "#### `{}`\n", method.name()).unwrap();
        let stream = |s: bool| if s { "stream " } else { "" };
        writeln!(
            out,
            "`rpc {}({}{}) returns ({}{})`: {} → {}\n",
            method.name(),
            stream(method.client_streaming()),
            method.input_type().rsplit('.').next().unwrap_or_default(),
            stream(method.server_streaming()),
            method.output_type().rsplit('.').next().unwrap_or_default(),
            type_link(method.input_type()),
            type_link(method.output_type()),
        )
        .unwrap();
        paragraph(out, &c.leading(&mpath));
    }
}

fn render_message(
    out: &mut String,
    types: &Types,
    prefix: &str,
    msg: &DescriptorProto,
    c: &Comments,
    path: Vec<i32>,
) {
    if msg.options.as_ref().and_then(|o| o.map_entry) == Some(true) {
        return;
    }
    let full = format!("{prefix}.{}", msg.name());
    let short = full.strip_prefix(&format!("{PACKAGE}.")).unwrap_or(&full);
    heading(out, 3, "Message", &full, short);
    paragraph(out, &c.leading(&path));
    if msg.field.is_empty() {
        writeln!(out, "No fields.\n").unwrap();
    } else {
        writeln!(out, "| field | number | type | description |").unwrap();
        writeln!(out, "|---|---:|---|---|").unwrap();
        for (k, field) in msg.field.iter().enumerate() {
            let mut fpath = path.clone();
            fpath.extend([MESSAGE_FIELD, k as i32]);
            let mut description = cell(&c.leading(&fpath));
            if let Some(index) = field.oneof_index
                && !field.proto3_optional()
            {
                let index = index as usize;
                let mut opath = path.clone();
                opath.extend([MESSAGE_ONEOF, index as i32]);
                let oneof = &msg.oneof_decl[index];
                let note = format!("Member of oneof `{}`", oneof.name());
                let oneof_comment = cell(&c.leading(&opath));
                let note = if oneof_comment.is_empty() {
                    format!("{note}.")
                } else {
                    format!("{note}: {oneof_comment}")
                };
                description = format!("{description}<br>*{note}*");
            }
            writeln!(
                out,
                "| `{}` | {} | {} | {} |",
                field.name(),
                field.number(),
                types.describe(field),
                description
            )
            .unwrap();
        }
        writeln!(out).unwrap();
    }
    for (k, nested) in msg.nested_type.iter().enumerate() {
        let mut npath = path.clone();
        npath.extend([MESSAGE_NESTED, k as i32]);
        render_message(out, types, &full, nested, c, npath);
    }
    for (k, nested) in msg.enum_type.iter().enumerate() {
        let mut npath = path.clone();
        npath.extend([MESSAGE_ENUM, k as i32]);
        render_enum(out, &full, nested, c, npath);
    }
}

fn render_enum(
    out: &mut String,
    prefix: &str,
    e: &EnumDescriptorProto,
    c: &Comments,
    path: Vec<i32>,
) {
    let full = format!("{prefix}.{}", e.name());
    let short = full.strip_prefix(&format!("{PACKAGE}.")).unwrap_or(&full);
    heading(out, 3, "Enum", &full, short);
    paragraph(out, &c.leading(&path));
    writeln!(out, "| value | number | description |").unwrap();
    writeln!(out, "|---|---:|---|").unwrap();
    for (k, value) in e.value.iter().enumerate() {
        let mut vpath = path.clone();
        vpath.extend([ENUM_VALUE, k as i32]);
        writeln!(
            out,
            "| `{}` | {} | {} |",
            value.name(),
            value.number(),
            cell(&c.leading(&vpath))
        )
        .unwrap();
    }
    writeln!(out).unwrap();
}

/// Renders the whole reference. Files with services come first, then by name; everything inside a
/// file in source order.
fn render() -> String {
    let set = FileDescriptorSet::decode(sidescan_proto::FILE_DESCRIPTOR_SET)
        .expect("FILE_DESCRIPTOR_SET decodes");
    let mut files: Vec<&FileDescriptorProto> =
        set.file.iter().filter(|f| f.package() == PACKAGE).collect();
    files.sort_by_key(|f| (f.service.is_empty(), f.name().to_string()));
    assert!(
        files.iter().all(|f| f.source_code_info.is_some()),
        "the descriptor set carries no comments (protox::compile keeps source info)"
    );
    let types = Types::new(&files);

    let mut out = String::new();
    writeln!(out, "# `{PACKAGE}` API reference\n").unwrap();
    writeln!(
        out,
        "<!-- Generated from proto/sidescan/v1/*.proto by proto/tests/api_reference.rs: do not \
         edit. Regenerate with `{REGENERATE}`. -->\n"
    )
    .unwrap();
    writeln!(
        out,
        "Generated from the comments of the `.proto` files, which are the contract: every field \
         and every status code is documented there. Within `{PACKAGE}` only additive changes are \
         made (`buf breaking` against `proto/baseline/sidescan-v1.binpb` enforces it).\n"
    )
    .unwrap();

    writeln!(out, "## Contents\n").unwrap();
    for file in &files {
        writeln!(
            out,
            "- [`{0}`](../proto/{0})",
            file.name().trim_start_matches('/')
        )
        .unwrap();
        let mut entries: Vec<String> = Vec::new();
        for svc in &file.service {
            let full = format!("{}.{}", file.package(), svc.name());
            entries.push(format!("service [`{}`](#{})", svc.name(), anchor(&full)));
        }
        for msg in &file.message_type {
            let full = format!("{}.{}", file.package(), msg.name());
            entries.push(format!("[`{}`](#{})", msg.name(), anchor(&full)));
        }
        for e in &file.enum_type {
            let full = format!("{}.{}", file.package(), e.name());
            entries.push(format!("enum [`{}`](#{})", e.name(), anchor(&full)));
        }
        for entry in entries {
            writeln!(out, "  - {entry}").unwrap();
        }
    }
    writeln!(out).unwrap();

    for file in &files {
        let c = Comments::new(file);
        writeln!(out, "## `{}`\n", file.name()).unwrap();
        paragraph(&mut out, &c.leading(&[FILE_SYNTAX]));
        for note in c.detached() {
            writeln!(out, "```text\n{note}\n```\n").unwrap();
        }
        for i in 0..file.service.len() {
            render_service(&mut out, file, &c, i);
        }
        // Messages and enums in source order (by the line they start on).
        let mut items: Vec<(i32, Vec<i32>)> = Vec::new();
        for i in 0..file.message_type.len() {
            items.push((0, vec![FILE_MESSAGE, i as i32]));
        }
        for i in 0..file.enum_type.len() {
            items.push((0, vec![FILE_ENUM, i as i32]));
        }
        for item in &mut items {
            item.0 = c
                .by_path
                .get(&item.1)
                .and_then(|loc| loc.span.first().copied())
                .unwrap_or(i32::MAX);
        }
        items.sort();
        for (_, path) in items {
            let index = path[1] as usize;
            if path[0] == FILE_MESSAGE {
                render_message(
                    &mut out,
                    &types,
                    file.package(),
                    &file.message_type[index],
                    &c,
                    path,
                );
            } else {
                render_enum(&mut out, file.package(), &file.enum_type[index], &c, path);
            }
        }
    }
    writeln!(out, "## Well-known types\n").unwrap();
    writeln!(
        out,
        "`google.protobuf.Duration` and `google.protobuf.Timestamp` are protobuf's own; in the \
         canonical JSON mapping they are strings (`\"1.5s\"`, RFC 3339)."
    )
    .unwrap();
    out
}

fn reference_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/api.md")
}

#[test]
fn api_reference_is_fresh() {
    let rendered = render();
    let path = reference_path();
    if std::env::var_os("UPDATE_API_REFERENCE").is_some_and(|v| v == "1") {
        std::fs::write(&path, &rendered).expect("write docs/api.md");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed == rendered {
        return;
    }
    let first_difference = committed
        .lines()
        .zip(rendered.lines())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| committed.lines().count().min(rendered.lines().count()));
    let line = |text: &str| {
        text.lines()
            .nth(first_difference)
            .unwrap_or("<end of file>")
            .to_string()
    };
    panic!(
        "docs/api.md is stale: it differs from what the .proto comments render, first at line \
         {}:\n  docs/api.md: {}\n  rendered:    {}\nRegenerate it with `{REGENERATE}` and commit it.",
        first_difference + 1,
        line(&committed),
        line(&rendered),
    );
}

#[test]
fn api_reference_covers_every_rpc_message_and_enum() {
    let rendered = render();
    let set = FileDescriptorSet::decode(sidescan_proto::FILE_DESCRIPTOR_SET).unwrap();
    for file in set.file.iter().filter(|f| f.package() == PACKAGE) {
        for svc in &file.service {
            for method in &svc.method {
                assert!(
                    rendered.contains(&format!("#### `{}`", method.name())),
                    "rpc {} missing",
                    method.name()
                );
            }
        }
        for msg in &file.message_type {
            assert!(
                rendered.contains(&format!("### Message `{}`", msg.name())),
                "message {} missing",
                msg.name()
            );
        }
        for e in &file.enum_type {
            assert!(
                rendered.contains(&format!("### Enum `{}`", e.name())),
                "enum {} missing",
                e.name()
            );
        }
    }
    // Status codes are documented per RPC and in the service's table.
    for code in [
        "INVALID_ARGUMENT",
        "NOT_FOUND",
        "UNAUTHENTICATED",
        "PERMISSION_DENIED",
        "UNAVAILABLE",
        "DATA_LOSS",
        "FAILED_PRECONDITION",
        "RESOURCE_EXHAUSTED",
        "DEADLINE_EXCEEDED",
        "CANCELLED",
        "INTERNAL",
    ] {
        assert!(rendered.contains(code), "status code {code} not documented");
    }
    // Rendering is deterministic.
    assert_eq!(rendered, render());
}

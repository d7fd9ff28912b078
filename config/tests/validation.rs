//! Validation reports every error with its exact path: a file with ten mistakes,
//! unknown keys at every depth, duplicates, required keys per transport, and no
//! secret in any message or `Debug` output.

use openagentio_config::{BridgeKind, ConfigError, Format, load_with_env};

fn no_env(_: &str) -> Option<String> {
    None
}

/// The `path: message` lines of loading `yaml`, which must fail.
fn errors(yaml: &str) -> Vec<String> {
    match load_with_env(yaml, Format::Yaml, &no_env) {
        Ok(cfg) => panic!("loaded: {cfg:?}"),
        Err(ConfigError::Invalid { errors }) => errors.lines(),
        Err(e) => panic!("not a validation error: {e}"),
    }
}

const V: &str = "version: openagentio.bridge/v1\n";

#[test]
fn a_version_that_is_not_the_format_string_says_what_to_write() {
    for (value, shown) in [("1", "1"), ("true", "true"), ("v1", "\"v1\"")] {
        assert_eq!(
            errors(&format!("version: {value}\n")),
            [format!(
                "version: unsupported version {shown}; expected \"openagentio.bridge/v1\""
            )]
        );
    }
}

#[test]
fn ten_mistakes_are_all_reported_with_their_paths() {
    let text = include_str!("data/ten_mistakes.yaml");
    assert_eq!(
        errors(text),
        [
            "bridges[1].config.access_token: environment variable `MATRIX_TOKEN` is not set (write `${MATRIX_TOKEN:-default}` to give a default)",
            "version: unsupported version \"openagentio.bridge/v2\"; expected \"openagentio.bridge/v1\"",
            "bus.transport: unknown value \"kafka\"; expected one of: memory, nats",
            "http.listen: expected an address with a port, like \"127.0.0.1:8080\" or \"[::]:8080\"",
            "bridges[0].mappings.target_prefx: unknown key (did you mean `target_prefix`?); accepted keys: metadata_prefix, session_field, target_prefix, text_field, tool",
            "bridges[1].config.homeserver_url: invalid URL: relative URL without a base",
            "bridges[1].config.user_id: missing required key",
            "bridges[2].config.timeout: expected a positive number",
            "bridges[3].mappings.target: duplicate target \"llm\": also served by bridge \"llm\" (bridges[2])",
            "telemetri: unknown key (did you mean `telemetry`?); accepted keys: bridges, bus, http, shutdown, telemetry, version",
        ]
    );
    // The error's Display holds the count and every line.
    let e = load_with_env(text, Format::Yaml, &no_env).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("invalid config (10 errors):\nbridges[1].config.access_token")
    );
}

#[test]
fn unknown_keys_at_every_depth() {
    let yaml = format!(
        "{V}extra: 1
bus:
  nats: {{url: nats://h:4222, tls: {{required: true, ca: x}}}}
http:
  tokens: [{{token: t, tenannt: acme}}]
bridges:
  - name: fs
    type: mcp_tool
    typo: 1
    config: {{command: x, supervision: {{max_restarts: 2, window: 3}}}}
  - name: mx
    type: matrix_event
    config:
      homeserver_url: http://hs
      user_id: '@a:hs'
      password: pw
      room_ids: ['!r:hs']
      responder: [{{room: '!r:hs', target: llm, throttle: 1}}]
    mappings: {{session: room}}
"
    );
    assert_eq!(
        errors(&yaml),
        [
            "bus.nats.tls.ca: unknown key; accepted keys: ca_file, cert_file, key_file, required",
            "http.tokens[0].tenannt: unknown key (did you mean `tenant`?); accepted keys: tenant, token",
            "bridges[0].typo: unknown key (did you mean `type`?); accepted keys: config, mappings, name, type",
            "bridges[0].config.supervision.window: unknown key; accepted keys: base_delay_seconds, health_failure_threshold, jitter_enabled, max_delay_seconds, max_restarts, restart_window_seconds",
            "bridges[1].mappings.session: unknown key; accepted keys: event_prefix, inbound_message_event, metadata_prefix, outbound_message_event, session_field, session_strategy, text_field, tool",
            "bridges[1].config.responder[0].throttle: unknown key; accepted keys: edit_throttle, max_edits, room, target, typing",
            "extra: unknown key; accepted keys: bridges, bus, http, shutdown, telemetry, version",
        ]
    );
}

#[test]
fn unknown_bridge_type_lists_the_known_ones() {
    let yaml = format!("{V}bridges: [{{name: k, type: kafka_bridge, config: {{brokers: x}}}}]\n");
    assert_eq!(
        errors(&yaml),
        [
            "bridges[0].type: unknown bridge type \"kafka_bridge\"; known types: echo, mcp_tool, matrix_event, openai_chat_sse, openclaw_chat_sse"
        ]
    );
}

#[test]
fn duplicate_names_and_targets() {
    let yaml = format!(
        "{V}bridges:
  - {{name: fs, type: mcp_tool, config: {{command: a}}}}
  - {{name: fs, type: mcp_tool, config: {{command: b}}}}
  - {{name: fs2, type: mcp_tool, config: {{command: c}}, mappings: {{target_prefix: fs}}}}
  - {{name: chat, type: openai_chat_sse, config: {{base_url: 'http://a', model: m}}}}
  - {{name: chat2, type: openclaw_chat_sse, config: {{base_url: 'http://b', model: m}}, mappings: {{target: chat}}}}
  - {{name: fs.read, type: openai_chat_sse, config: {{base_url: 'http://c', model: m}}}}
  - {{name: mx, type: matrix_event, config: {{homeserver_url: 'http://hs', user_id: '@a:hs', access_token: t, room_ids: ['!r:hs']}}}}
  - {{name: other, type: openai_chat_sse, config: {{base_url: 'http://d', model: m}}, mappings: {{target: mx.send}}}}
  - {{name: tools, type: mcp_tool, config: {{command: d}}, mappings: {{target_prefix: fs.nested}}}}
"
    );
    assert_eq!(
        errors(&yaml),
        [
            "bridges[1].name: duplicate bridge name \"fs\" (already used by bridges[0])",
            "bridges[2].mappings.target_prefix: duplicate target prefix \"fs\": also used by bridge \"fs\" (bridges[0])",
            "bridges[4].mappings.target: duplicate target \"chat\": also served by bridge \"chat\" (bridges[3])",
            "bridges[5].name: target \"fs.read\" may clash with a tool of bridge \"fs\" (bridges[0]), which serves every \"fs.<tool>\"",
            "bridges[7].mappings.target: duplicate target \"mx.send\": also served by bridge \"mx\" (bridges[6])",
        ]
    );
}

#[test]
fn required_keys_per_transport_and_kind() {
    let yaml = format!(
        "{V}bridges:
  - {{name: a, type: mcp_tool, config: {{transport: stdio, http_url: 'http://x/mcp'}}}}
  - {{name: b, type: mcp_tool, config: {{transport: streamable_http, command: npx, cwd: /tmp}}}}
  - {{name: c, type: mcp_tool}}
  - {{name: d, type: matrix_event, config: {{homeserver_url: 'http://hs', user_id: 'bot', room_ids: ['!r:hs']}}}}
  - {{name: e, type: matrix_event, config: {{homeserver_url: 'http://hs', user_id: '@b:hs', access_token: t, password: p}}}}
  - {{name: f, type: openai_chat_sse, config: {{base_url: 'ftp://x', params: {{model: x, stream: false}}}}}}
"
    );
    assert_eq!(
        errors(&yaml),
        [
            "bridges[0].config.command: missing required key (transport `stdio` needs it)",
            "bridges[1].config.http_url: missing required key (transport `streamable_http` needs it)",
            "bridges[1].config.cwd: only used with transport `stdio`",
            "bridges[2].config.command: missing required key (transport `stdio` needs it)",
            "bridges[3].config.user_id: expected a Matrix user id like \"@bot:example.org\"",
            "bridges[3].config.access_token: missing required key (give `access_token`, or `password` to log in)",
            "bridges[4].config.password: give either `access_token` or `password`, not both",
            "bridges[4].config.room_ids: missing required key (or set `allowed_inviters` with `auto_join: true`)",
            "bridges[5].config.base_url: expected a URL with scheme http or https, found `ftp`",
            "bridges[5].config.model: missing required key",
            "bridges[5].config.params.model: not allowed here: set by `config.model`",
            "bridges[5].config.params.stream: not allowed here: the bridge always streams",
        ]
    );
}

#[test]
fn subject_names_tenants_and_sections() {
    let yaml = format!(
        "{V}bus: {{subject_prefix: 'acp..v1', default_tenant: 'ac.me', nats: {{url: 'http://h', user: u, token: t, retry_on_initial_connect: 'yes'}}}}
http: {{tokens: [{{token: same}}, {{token: same, tenant: 'a b'}}], body_limit: 0, cors_origins: ['https://x.org/path']}}
telemetry: {{log_level: verbose, otlp_endpoint: 'grpc://collector:4317'}}
shutdown: {{drain_timeout: -1}}
bridges:
  - {{name: 'my bridge', type: openai_chat_sse, config: {{base_url: 'http://a', model: m}}}}
  - {{name: ok, type: openai_chat_sse, config: {{base_url: 'http://a', model: m}}, mappings: {{target: 'a.*'}}}}
  - {{name: mx, type: matrix_event, config: {{homeserver_url: 'http://hs', user_id: '@a:hs', access_token: t, room_ids: [room]}}, mappings: {{inbound_message_event: 'matrix.>'}}}}
"
    );
    assert_eq!(
        errors(&yaml),
        [
            "bus.nats.url: expected a URL with scheme nats or tls or ws or wss, found `http`",
            "bus.nats.retry_on_initial_connect: expected true or false, found a string",
            "bus.nats.password: missing: `user` needs `password`",
            "bus.nats.user: give only one way to authenticate: `token`, `user`/`password` or `credentials_file`",
            "bus.subject_prefix: invalid subject name: has an empty subject token (a leading, trailing or doubled `.`)",
            "bus.default_tenant: invalid subject token: must be a single subject token (no `.`)",
            "http.tokens[1].tenant: invalid subject token: must not contain spaces or control characters",
            "http.body_limit: expected a positive size in bytes (a number, or a string like \"4MiB\", \"512KiB\"), found 0",
            "http.cors_origins[0]: expected `*` or an origin like \"https://app.example.org\" (no path)",
            "http.tokens[1].token: duplicate token (the same as tokens[0])",
            "telemetry.log_level: expected a level (trace, debug, info, warn, error, off) or directives like \"info,openagentio=debug\"",
            "telemetry.otlp_endpoint: expected a URL with scheme http or https, found `grpc`",
            "shutdown.drain_timeout: expected a number of seconds that is not negative",
            "bridges[0].name: invalid bridge name: must not contain spaces or control characters (a bridge's name is part of its target names)",
            "bridges[1].mappings.target: invalid subject name: must not contain the NATS wildcards `*` or `>`",
            "bridges[2].mappings.inbound_message_event: invalid subject name: must not contain the NATS wildcards `*` or `>`",
            "bridges[2].config.room_ids[0]: expected a room id like \"!abc:example.org\" (or \"!abc\" in room version 12) or an alias like \"#room:example.org\"",
        ]
    );
}

#[test]
fn wrong_shapes_are_reported_not_panicked_on() {
    assert_eq!(errors("[1, 2]"), ["expected a mapping, found a list"]);
    assert_eq!(errors(""), ["expected a mapping, found nothing"]);
    assert_eq!(
        errors("bridges: {}"),
        [
            "version: missing required key",
            "bridges: expected a list of bridges, found a mapping",
        ]
    );
    assert_eq!(
        errors(&format!(
            "{V}bridges: [3, {{name: x, type: mcp_tool, config: [1]}}]\nbus: 7\n"
        )),
        [
            "bus: expected a mapping, found a number",
            "bridges[0]: expected a mapping, found a number",
            "bridges[1].config: expected a mapping, found a list",
        ]
    );
}

#[test]
fn syntax_errors_are_not_validation_errors() {
    let e = load_with_env("version: [", Format::Yaml, &no_env).unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::Syntax {
                format: Format::Yaml,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.field_errors().is_empty());
    let e = load_with_env("{\"version\": 1,}", Format::Json, &no_env).unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::Syntax {
                format: Format::Json,
                line: Some(1),
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn secrets_never_show_in_debug_output_or_errors() {
    let secrets = [
        "sk-live-SECRET1",
        "hunter2-SECRET2",
        "nats-SECRET3",
        "hdr-SECRET4",
        "env-SECRET5",
        "gw-SECRET6",
    ];
    let yaml = format!(
        "{V}bus: {{transport: nats, nats: {{user: u, password: {}}}}}
http: {{tokens: [{{token: {}}}]}}
bridges:
  - {{name: a, type: openai_chat_sse, config: {{base_url: 'http://a', model: m, token: {}, headers: {{Authorization: 'Bearer {}'}}}}}}
  - {{name: b, type: mcp_tool, config: {{command: x, env: {{API_KEY: {}}}}}}}
  - {{name: c, type: matrix_event, config: {{homeserver_url: 'http://hs', user_id: '@c:hs', password: {}, room_ids: ['!r:hs']}}}}
",
        secrets[1], secrets[5], secrets[0], secrets[3], secrets[4], secrets[1]
    );
    let cfg = load_with_env(&yaml, Format::Yaml, &no_env).unwrap();
    let debug = format!("{cfg:?} {cfg:#?}");
    for s in secrets.iter().filter(|s| yaml.contains(*s)) {
        assert!(!debug.contains(s), "{s} in Debug output");
    }
    assert!(debug.contains("<redacted>"));

    // Wrong types and invalid values around the same secrets: no error text shows them.
    let bad = format!(
        "{V}bus: {{nats: {{token: {}, user: u, password: ['{}']}}}}
http: {{tokens: [{{token: '{}'}}, {{token: '{}'}}]}}
bridges:
  - {{name: a, type: openai_chat_sse, config: {{base_url: 'https://u:{}@a', model: m, token: 5, headers: {{X-K: \"{}\\n\"}}}}}}
",
        secrets[2], secrets[1], secrets[5], secrets[5], secrets[0], secrets[3]
    );
    let e = load_with_env(&bad, Format::Yaml, &no_env).unwrap_err();
    let text = format!("{e} {e:?}");
    assert!(e.field_errors().len() >= 5, "{text}");
    for s in secrets {
        assert!(!text.contains(s), "{s} in: {text}");
    }
}

#[test]
fn the_serve_timeout_is_optional_and_positive() {
    let ok = |yaml: &str| load_with_env(yaml, Format::Yaml, &no_env).unwrap();
    assert_eq!(ok(V).bus.serve_timeout, None);
    let cfg = ok(&format!("{V}bus: {{serve_timeout: 2m}}"));
    assert_eq!(
        cfg.bus.serve_timeout,
        Some(std::time::Duration::from_secs(120))
    );
    let errs = errors(&format!("{V}bus: {{serve_timeout: 0}}"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("bus.serve_timeout: "), "{errs:?}");
    let errs = errors(&format!("{V}bus: {{serve_timeout: soon}}"));
    assert!(errs[0].starts_with("bus.serve_timeout: "), "{errs:?}");
}

#[test]
fn the_cancel_grace_defaults_to_five_seconds_and_is_positive() {
    let ok = |yaml: &str| load_with_env(yaml, Format::Yaml, &no_env).unwrap();
    assert_eq!(ok(V).bus.cancel_grace, std::time::Duration::from_secs(5));
    let cfg = ok(&format!("{V}bus: {{cancel_grace: 250ms}}"));
    assert_eq!(cfg.bus.cancel_grace, std::time::Duration::from_millis(250));
    for bad in ["0", "-1s", "later"] {
        let errs = errors(&format!("{V}bus: {{cancel_grace: {bad}}}"));
        assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
        assert!(errs[0].starts_with("bus.cancel_grace: "), "{bad}: {errs:?}");
    }
}

#[test]
fn matrix_room_ids_of_every_room_version_load() {
    // Room version 12 ids have no `:server` part; aliases always do.
    let yaml = format!(
        "{V}bridges:\n  - {{name: mx, type: matrix_event, config: {{homeserver_url: 'http://hs', user_id: '@a:hs', access_token: t, room_ids: ['!abc:hs', '!Bx9_qL2w', '#room:hs'], responder: [{{room: '!Bx9_qL2w', target: chat}}]}}}}\n"
    );
    load_with_env(&yaml, Format::Yaml, &no_env).unwrap();
    let errs = errors(&format!(
        "{V}bridges:\n  - {{name: mx, type: matrix_event, config: {{homeserver_url: 'http://hs', user_id: '@a:hs', access_token: t, room_ids: ['!', '#room', 'room:hs']}}}}\n"
    ));
    assert_eq!(errs.len(), 3, "{errs:?}");
    let zero_edits = errors(&format!(
        "{V}bridges:\n  - {{name: mx, type: matrix_event, config: {{homeserver_url: 'http://hs', user_id: '@a:hs', access_token: t, room_ids: ['!a'], responder: [{{room: '*', target: chat, max_edits: 0}}]}}}}\n"
    ));
    assert_eq!(zero_edits.len(), 1, "{zero_edits:?}");
    assert!(
        zero_edits[0].starts_with("bridges[0].config.responder[0].max_edits: "),
        "{zero_edits:?}"
    );
    for (i, e) in errs.iter().enumerate() {
        assert!(
            e.starts_with(&format!(
                "bridges[0].config.room_ids[{i}]: expected a room id"
            )),
            "{errs:?}"
        );
    }
}

#[test]
fn a_byte_order_mark_is_not_part_of_the_file() {
    for (text, format) in [
        ("\u{feff}version: openagentio.bridge/v1\n", Format::Yaml),
        (
            "\u{feff}{\"version\": \"openagentio.bridge/v1\"}",
            Format::Json,
        ),
    ] {
        load_with_env(text, format, &no_env).unwrap();
    }
}

#[test]
fn a_key_given_twice_is_an_error_in_both_formats() {
    let json = "{\"version\": \"openagentio.bridge/v1\",\n \"http\": {\"listen\": \"127.0.0.1:1\", \"listen\": \"127.0.0.1:2\"}}";
    let e = load_with_env(json, Format::Json, &no_env).unwrap_err();
    assert!(
        matches!(e, ConfigError::Syntax { line: Some(2), .. })
            && e.to_string().contains("\"listen\""),
        "{e}"
    );
    let yaml = format!("{V}http:\n  listen: 127.0.0.1:1\n  listen: 127.0.0.1:2\n");
    let e = load_with_env(&yaml, Format::Yaml, &no_env).unwrap_err();
    assert!(matches!(e, ConfigError::Syntax { .. }), "{e}");
    assert!(e.to_string().contains("listen"), "{e}");
}

#[test]
fn bad_sizes_show_their_text_and_non_finite_numbers_their_path() {
    assert_eq!(
        errors(&format!("{V}http: {{body_limit: '1.5MiB'}}\n")),
        [
            "http.body_limit: expected a positive size in bytes (a number, or a string like \"4MiB\", \"512KiB\"), found \"1.5MiB\""
        ]
    );
    // YAML's .inf and .nan have no JSON form: the key is not taken as absent.
    assert_eq!(
        errors(&format!(
            "{V}shutdown: {{drain_timeout: .inf}}\nbus: {{transport: .nan}}\n"
        )),
        [
            "shutdown.drain_timeout: .inf is not a supported number (only finite ones are)",
            "bus.transport: .nan is not a supported number (only finite ones are)",
        ]
    );
}

#[test]
fn matrix_invites_and_responders_are_checked_as_the_bridge_does() {
    let yaml = |config: &str| {
        format!(
            "{V}bridges:\n  - {{name: mx, type: matrix_event, config: {{homeserver_url: 'http://hs', \
             user_id: '@bot:hs', access_token: t, {config}}}}}\n"
        )
    };
    let matrix = |config: &str| errors(&yaml(config));
    // Inviters take invites only with auto_join, and only then stand in for rooms.
    assert_eq!(
        matrix("allowed_inviters: ['@alice:hs']"),
        [
            "bridges[0].config.allowed_inviters: invites are accepted only with `auto_join: true`",
            "bridges[0].config.room_ids: missing required key (or set `allowed_inviters` with `auto_join: true`)",
        ]
    );
    let invites_only = yaml("allowed_inviters: ['@alice:hs'], auto_join: true");
    assert!(load_with_env(&invites_only, Format::Yaml, &no_env).is_ok());
    // A pattern that matches no user id (no `@`) is named, not a silent no.
    assert_eq!(
        matrix(
            "room_ids: ['!r:hs'], auto_join: true, allowed_inviters: [alice, '@*:hs'], sender_allowlist: ['*:hs', bob]"
        ),
        [
            "bridges[0].config.allowed_inviters[0]: \"alice\" matches no Matrix user id: they start with `@` (like \"@alice:example.org\", or \"@*:example.org\" for a whole server)",
            "bridges[0].config.sender_allowlist[1]: \"bob\" matches no Matrix user id: they start with `@` (like \"@alice:example.org\", or \"@*:example.org\" for a whole server)",
        ]
    );
    // One bad field of a responder does not hide the others' room errors.
    assert_eq!(
        matrix(
            "room_ids: ['#ok:hs'], responder: [{room: '#other:hs', target: ''}, \
             {room: '#ok:hs', target: a}, {room: '#ok:hs', target: b, edit_throttle: '-1s'}]"
        ),
        [
            "bridges[0].config.responder[0].target: invalid subject name: must not be empty",
            "bridges[0].config.responder[2].edit_throttle: expected a duration that is not negative",
            "bridges[0].config.responder[0].room: not one of `room_ids` (use `*` for all rooms)",
            "bridges[0].config.responder[2].room: room already wired by responder[1]",
        ]
    );
}

#[test]
fn a_token_with_a_line_break_is_refused_at_its_path() {
    let env = |name: &str| (name == "LLM_TOKEN").then(|| "s3cret\n".to_owned());
    let yaml = format!(
        "{V}http: {{tokens: [{{token: ok}}, {{token: '${{LLM_TOKEN}}', tenant: acme}}]}}\n\
         bridges:\n  - {{name: s, type: openai_chat_sse, config: {{base_url: 'http://a', model: m, \
         token: '${{LLM_TOKEN}}'}}}}\n  - {{name: t, type: mcp_tool, config: {{transport: streamable_http, \
         http_url: 'http://b/mcp', token: '${{LLM_TOKEN}}'}}}}\n"
    );
    let err = load_with_env(&yaml, Format::Yaml, &env).unwrap_err();
    let lines: Vec<String> = err.field_errors().iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].starts_with("http.tokens[1].token: must not contain line breaks"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("bridges[0].config.token: must not contain line breaks"),
        "{lines:?}"
    );
    assert!(
        lines[2].starts_with("bridges[1].config.token: must not contain line breaks"),
        "{lines:?}"
    );
    assert!(!err.to_string().contains("s3cret"));
}

#[test]
fn a_token_no_header_can_carry_as_given_is_refused() {
    for (token, why) in [
        ("'pad '", "must not begin or end with whitespace"),
        ("' pad'", "must not begin or end with whitespace"),
        ("'é'", "must be ASCII"),
    ] {
        let yaml = format!("{V}http: {{tokens: [{{token: {token}}}]}}\n");
        let err = load_with_env(&yaml, Format::Yaml, &no_env).unwrap_err();
        let lines: Vec<String> = err.field_errors().iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 1, "{token}: {lines:?}");
        assert!(
            lines[0].starts_with(&format!("http.tokens[0].token: {why}")),
            "{token}: {lines:?}"
        );
    }
}

#[test]
fn a_token_in_a_nats_url_is_refused_like_a_password() {
    for url in [
        "nats://s3cret@127.0.0.1:4222",
        "nats://u:s3cret@127.0.0.1:4222",
    ] {
        let lines = errors(&format!(
            "{V}bus: {{transport: nats, nats: {{url: '{url}'}}}}\n"
        ));
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("bus.nats.url: must not contain credentials"),
            "{lines:?}"
        );
        assert!(!lines[0].contains("s3cret"), "{lines:?}");
    }
}

#[test]
fn the_reference_mapping_keys_and_the_other_transports_keys_load_as_there() {
    // The reference parser gives every bridge `mappings.{tool, text_field,
    // session_field, metadata_prefix}`, and its MCP bridge reads only its
    // transport's keys.
    let generic = "tool: t, text_field: text, session_field: s, metadata_prefix: 'p.'";
    let yaml = format!(
        "{V}bridges:
  - {{name: m, type: mcp_tool, config: {{command: x, http_url: 'http://h/mcp', headers: {{A: b}}, token: t}},
     mappings: {{target_prefix: m, {generic}}}}}
  - {{name: h, type: mcp_tool, config: {{transport: streamable_http, http_url: 'http://h/mcp', command: x, args: [a], env: {{A: b}}}}}}
  - {{name: e, type: echo, mappings: {{{generic}}}}}
  - {{name: s, type: openai_chat_sse, config: {{base_url: 'http://a', model: m}}, mappings: {{tool: t}}}}
  - {{name: x, type: matrix_event, config: {{homeserver_url: 'http://hs', user_id: '@b:hs', access_token: t, room_ids: ['!r:hs']}},
     mappings: {{{generic}}}}}
"
    );
    let cfg = load_with_env(&yaml, Format::Yaml, &no_env).unwrap();
    let BridgeKind::McpTool(stdio) = &cfg.bridges[0].kind else {
        panic!()
    };
    // Ignored, as the reference ignores them: not used by the bridge either.
    assert_eq!(stdio.config.http_url, None);
    assert!(stdio.config.headers.is_empty() && stdio.config.token.is_none());
    let BridgeKind::McpTool(http) = &cfg.bridges[1].kind else {
        panic!()
    };
    assert_eq!(http.config.command, None);
    assert!(http.config.args.is_empty() && http.config.env.is_empty());

    // Typos are still errors, and `text_field` of an MCP bridge can only be
    // the reference's default (the answer always has its top-level `text`).
    assert_eq!(
        errors(&format!(
            "{V}bridges:\n  - {{name: m, type: mcp_tool, config: {{command: x}}, \
             mappings: {{text_feild: text, text_field: content}}}}\n"
        )),
        [
            "bridges[0].mappings.text_field: \"content\" is not supported: an `mcp_tool` answer always has its top-level `text` (as the reference's default \"text\" does); leave `text_field` out",
            "bridges[0].mappings.text_feild: unknown key (did you mean `text_field`?); accepted keys: metadata_prefix, session_field, target_prefix, text_field, tool",
        ]
    );
}

//! The Rust binding against the real library and the tiny models.
use std::path::PathBuf;
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

use sipp::{sys, Client, EmbedOptions, Estimate, Figure, FigureSource, GatewayAuth, GatewayOptions,
           LocalOptions, Message, Policy, ProviderKind, ProviderOptions, Rule, TextOptions};

fn models() -> PathBuf {
    match std::env::var_os("SIPP_TEST_MODELS_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models"),
    }
}
fn chat_model() -> PathBuf {
    models().join("tinystories-instruct-3m-soda-chat-Q4_0.gguf")
}
fn story_model() -> PathBuf {
    models().join("stories260K.gguf")
}

/// One client for the tests, with "chat", "story" and "long" (a context that shifts, so runs go
/// on until cancelled).
fn client() -> &'static Client {
    static C: OnceLock<Client> = OnceLock::new();
    C.get_or_init(|| {
        let c = Client::new().unwrap();
        c.add_local("chat", &LocalOptions::new(chat_model()).n_ctx(256).n_threads(1)).unwrap();
        c.add_local("story", &LocalOptions::new(story_model()).n_ctx(256).n_threads(1)).unwrap();
        c.add_local("long", &LocalOptions::new(story_model()).n_ctx(128).n_threads(1).context_shift(true))
            .unwrap();
        c
    })
}

fn ep(id: &str) -> sipp::Endpoint<'static> {
    client().endpoint(id).expect("endpoint")
}

fn greedy() -> TextOptions {
    TextOptions::new().temperature(0.0)
}

/// The C layout printed by sipp_abi_layout (tests/bindings/abi_layout.c, built by CMake):
/// struct name -> (size, [(field, offset)] in order). A small parser for its fixed JSON shape.
fn c_layout() -> Vec<(String, usize, Vec<(String, usize)>)> {
    let path = std::env::var("SIPP_ABI_LAYOUT").unwrap_or_else(|_| {
        format!("{}/../../build/tests/sipp_abi_layout", env!("CARGO_MANIFEST_DIR"))
    });
    let out = std::process::Command::new(&path).output().unwrap_or_else(|e| panic!("{}: {}", path, e));
    let json = String::from_utf8(out.stdout).unwrap();
    let mut structs = Vec::new();
    for line in json.lines().filter(|l| l.contains("\"size\"")) {
        let name = line.split('"').nth(1).unwrap().to_string();
        let size = line.split("\"size\": ").nth(1).unwrap().split(',').next().unwrap().parse().unwrap();
        let body = line.split("\"fields\": {").nth(1).unwrap().split('}').next().unwrap();
        let fields = body.split(", ").map(|kv| {
            let (k, v) = kv.split_once(": ").unwrap();
            (k.trim_matches('"').to_string(), v.parse().unwrap())
        }).collect();
        structs.push((name, size, fields));
    }
    structs
}

/// Differences between one struct of the C layout and a Rust mirror's (size, fields).
fn mismatches(layout: &[(String, usize, Vec<(String, usize)>)], name: &str, size: usize,
              fields: &[(&str, usize)]) -> Vec<String> {
    let Some((_, c_size, c_fields)) = layout.iter().find(|s| s.0 == name) else {
        return vec![format!("{}: not in sipp.h", name)];
    };
    let mut bad = Vec::new();
    if *c_size != size {
        bad.push(format!("{}: size {} != {}", name, size, c_size));
    }
    let ours: Vec<(String, usize)> = fields.iter().map(|(f, o)| (f.to_string(), *o)).collect();
    if &ours != c_fields {
        bad.push(format!("{}: fields {:?} != {:?}", name, ours, c_fields));
    }
    bad
}

/// (name, size, [(field, offset)]) of a sys mirror, its fields listed in order.
macro_rules! mirror {
    ($t:ident { $($f:ident),* $(,)? }) => {
        (stringify!($t), std::mem::size_of::<sys::$t>(),
         vec![$((stringify!($f), std::mem::offset_of!(sys::$t, $f))),*])
    };
}

fn mirrors() -> Vec<(&'static str, usize, Vec<(&'static str, usize)>)> {
    // the params structs come from include/sipp_settings.h (src/fields.rs)
    let mut v = Vec::from(sipp::sipp_params_fields!(mirror));
    v.extend(vec![
        mirror!(sipp_error { struct_size, code, subcode, message }),
        mirror!(sipp_client_params { struct_size, log_level }),
        mirror!(sipp_endpoint_info { struct_size, can_generate, can_chat, can_embed, n_ctx,
            n_ctx_train, n_embd, n_parallel, n_params, size_bytes, architecture, description, vision,
            audio_in, audio_out }),
        mirror!(sipp_engine_stats { struct_size, running, queued, completed, cancelled, failed,
            rejected_busy, prompt_tokens, generated_tokens, ticks, batch_tokens, batch_fill,
            cache_hits, cache_misses, cache_evictions, cache_ram_bytes, cache_disk_bytes, stalls,
            stalled, media_encoded, media_encode_ms }),
        mirror!(sipp_media { kind, data, len, mime_type, message_index }),
        mirror!(sipp_tool { name, description, parameters }),
        mirror!(sipp_tool_call { id, name, arguments }),
        mirror!(sipp_chat_message { role, content, tool_calls, n_tool_calls, tool_call_id,
            reasoning }),
        mirror!(sipp_delta { struct_size, kind, text, len, tool_index, tool_id, tool_name }),
        mirror!(sipp_message { role, content }),
        mirror!(sipp_usage { struct_size, input_tokens, output_tokens, total_tokens }),
        mirror!(sipp_stats { struct_size, queue_ms, ttft_ms, prefill_ms, decode_ms, prefill_tok_s,
            decode_tok_s, total_ms, itl_avg_ms, itl_p99_ms, prefill_tokens, cache_source,
            cached_tokens, encode_ms, media_chunks }),
        mirror!(sipp_response { struct_size, status, error_message, text, text_len, finish_reason,
            embedding, n_embd, normalized, usage, stats, http_status, retry_after_s, request_id,
            error_code, logprobs, n_logprobs, tool_calls, n_tool_calls, reasoning, reasoning_len }),
        mirror!(sipp_token_batch { struct_size, text, len, n_tokens, done, logprobs, n_logprobs }),
        mirror!(sipp_top_logprob { token, token_len, logprob }),
        mirror!(sipp_token_logprob { token, token_len, logprob, top, n_top }),
        mirror!(sipp_figure { value, samples, source }),
        mirror!(sipp_estimate { struct_size, local, loaded, healthy, prompt_tokens, cached_tokens,
            cache_source, cache_on_disk, prefill_tokens, n_ctx, running, queued, free_slots,
            ttft_ms, decode_tokens_per_s, total_ms, price_input_per_mtok, price_output_per_mtok,
            error_rate, busy_rate }),
        mirror!(sipp_rule { kind, value, tag }),
        mirror!(sipp_route_candidate { endpoint, estimate, name }),
        mirror!(sipp_route_choice { index, endpoint, reasons, dropped }),
        mirror!(sipp_audit_decision { outcome, confidence, min_prob, n_tokens, retry_safe, reasons }),
    ]);
    v
}

#[test]
fn struct_mirrors_match_the_c_layout() {
    let layout = c_layout();
    let ours = mirrors();
    let mut bad: Vec<String> = layout.iter().filter(|c| !ours.iter().any(|m| m.0 == c.0))
        .map(|c| format!("{}: no mirror", c.0)).collect();
    for (name, size, fields) in &ours {
        bad.extend(mismatches(&layout, name, *size, fields));
    }
    assert!(bad.is_empty(), "{:#?}", bad);
}

#[test]
fn the_layout_check_catches_a_stale_mirror() {
    // the mirror as it was before extra_json and request_id were appended
    let layout = c_layout();
    let (name, size, fields) = mirror!(sipp_text_params { struct_size, max_tokens, temperature,
        top_k, top_p, min_p, repeat_penalty, seed, stop, n_stop, context_key, cache_scope, grammar,
        json_schema, on_tokens, user_data, timeout_ms, ignore_eos });
    let bad = mismatches(&layout, name, size - 16, &fields);
    assert_eq!(bad.len(), 2, "{:?}", bad);
    assert!(bad[0].starts_with("sipp_text_params: size") && bad[1].starts_with("sipp_text_params: fields"));
}

#[test]
fn logprobs_spell_the_text() {
    let r = ep("story")
        .query("Once upon a time", &greedy().max_tokens(12).logprobs(true).top_logprobs(3))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(r.logprobs.len(), 12);
    let bytes: Vec<u8> = r.logprobs.iter().flat_map(|e| e.token.clone()).collect();
    assert_eq!(String::from_utf8_lossy(&bytes), r.text);
    for e in &r.logprobs {
        assert!(e.logprob <= 0.0 && e.top.len() == 3 && e.top[0].0 == e.token);
        assert!(e.top.windows(2).all(|w| w[0].1 >= w[1].1));
    }
    assert!(ep("story").query("Once", &greedy().max_tokens(2)).unwrap().wait().unwrap().logprobs.is_empty());
}

#[test]
fn query_is_deterministic_when_greedy() {
    let story = ep("story");
    let a = story.query("Once upon a time", &greedy().max_tokens(24)).unwrap().wait().unwrap();
    let b = story.query("Once upon a time", &greedy().max_tokens(24)).unwrap().wait().unwrap();
    assert!(!a.text.trim().is_empty());
    assert_eq!(a.text, b.text);
    assert_eq!(a.usage.total_tokens, a.usage.input_tokens + a.usage.output_tokens);
    assert!(a.finish_reason == "stop" || a.finish_reason == "length");
    assert!(a.stats.total_ms > 0.0);
    assert!(sipp::version().split('.').count() == 3);
}

#[test]
fn chat_streams_batches_that_add_up_to_the_text() {
    let mut run = ep("chat").chat(&[Message::user("Do you like to play outside?")], &greedy().max_tokens(32)).unwrap();
    let batches: Vec<_> = (&mut run).map(|b| b.unwrap()).collect();
    let r = run.wait().unwrap();
    assert!(batches.len() >= 2);
    assert_eq!(batches.iter().map(|b| b.text.as_str()).collect::<String>(), r.text);
    let n: u32 = batches.iter().map(|b| b.n_tokens).sum();
    assert!(n <= r.usage.output_tokens && n + 1 >= r.usage.output_tokens); // EOS carries no text
    assert_eq!(r.finish_reason, "stop");
}

#[test]
fn embed_returns_a_normalised_vector() {
    let chat = ep("chat");
    let r = chat.embed("hello world", true).unwrap().wait().unwrap();
    let v = r.embedding.unwrap();
    assert_eq!(v.len() as u32, chat.info().unwrap().n_embd);
    let norm: f32 = v.iter().map(|x| x * x).sum();
    assert!((norm - 1.0).abs() < 1e-4 && r.normalized);
    assert!(!chat.embed("hello world", false).unwrap().wait().unwrap().normalized);
}

#[test]
fn info_and_stats() {
    assert_eq!(ep("chat").info().unwrap().architecture, "gpt2");
    assert!(!ep("story").info().unwrap().can_chat);
    assert!(ep("story").stats().unwrap().completed < u64::MAX);
}

#[test]
fn cancel_mid_stream() {
    let mut run = ep("long").query("Once upon a time", &TextOptions::new().max_tokens(100_000).ignore_eos(true)).unwrap();
    let mut got = String::new();
    let mut n = 0;
    while let Some(b) = run.next() {
        got.push_str(&b.unwrap().text);
        n += 1;
        if n == 3 {
            run.cancel();
        }
    }
    let r = run.wait().unwrap();
    assert_eq!(r.finish_reason, "cancelled");
    assert!(r.text.starts_with(&got[..got.len().min(r.text.len())]));
    assert!(r.usage.output_tokens < 100_000);
}

#[test]
fn cancel_from_another_thread() {
    let mut run = ep("long").query("Once upon a time", &TextOptions::new().max_tokens(100_000).ignore_eos(true)).unwrap();
    let c = run.canceller();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(200));
        c.cancel();
    });
    assert_eq!(run.wait().unwrap().finish_reason, "cancelled");
    t.join().unwrap();
}

#[test]
fn a_run_moves_to_another_thread_and_outlives_nothing_it_borrows() {
    let run = ep("story").query("Once upon a time", &greedy().max_tokens(8)).unwrap();
    let text = thread::spawn(move || { let mut run = run; run.wait().unwrap().text }).join().unwrap();
    assert!(!text.is_empty());
}

#[test]
fn errors_carry_kind_and_message() {
    let e = ep("story").query("", &TextOptions::new()).unwrap_err();
    assert_eq!((e.kind, e.status), ("invalid_argument", 1));
    assert!(e.message.contains("empty"), "{}", e);
    assert_eq!(ep("story").chat(&[Message::user("hi")], &TextOptions::new()).unwrap_err().kind, "unsupported");
    let e = ep("story").query("x", &TextOptions::new().temperature(f32::NAN)).unwrap_err();
    assert!(e.kind == "invalid_argument" && e.message.contains("temperature"));
    let e = ep("chat").chat(&[Message::new("robot", "hi")], &TextOptions::new()).unwrap_err();
    assert!(e.message.contains("robot"));
    assert_eq!(ep("story").query("a\0b", &TextOptions::new()).unwrap_err().kind, "invalid_argument");
    let e = Client::new().unwrap().add_local("x", &LocalOptions::new("/nonexistent/model.gguf")).unwrap_err();
    assert_eq!(e.kind, "not_found");
    assert!(format!("{}", e).starts_with("not_found: "));
    // a sha256 pin that the file does not match refuses the load, naming both hashes
    let e = Client::new().unwrap()
        .add_local("x", &LocalOptions::new(story_model()).sha256("0".repeat(64))).unwrap_err();
    assert_eq!(e.kind, "model_invalid");
    assert!(e.message.contains(&format!("sha256 mismatch: expected {}, file has ", "0".repeat(64))),
            "{}", e.message);
}

#[test]
fn a_failed_run_is_an_error_from_iteration_and_wait() {
    let mut run = ep("long")
        .query("Once upon a time", &TextOptions::new().max_tokens(100_000).ignore_eos(true).timeout_ms(100))
        .unwrap();
    let err = (&mut run).find_map(|b| b.err()).expect("an error");
    assert_eq!((err.kind, err.status), ("deadline_exceeded", 8));
    assert_eq!(run.wait().unwrap_err(), err);
    assert!(run.next().is_none());
}

#[test]
fn ids_replace_and_remove() {
    let mut c = Client::new().unwrap();
    {
        let a = c.add_local("m", &LocalOptions::new(story_model())).unwrap();
        // a taken id through &self is refused: it would free `a` under us
        assert_eq!(c.add_local("m", &LocalOptions::new(story_model())).unwrap_err().kind, "invalid_argument");
        assert!(!a.query("Once", &TextOptions::new().max_tokens(4)).unwrap().wait().unwrap().text.is_empty());
    }
    let run = {
        let b = c.replace_local("m", &LocalOptions::new(story_model())).unwrap();
        b.query("Once upon a time", &TextOptions::new().max_tokens(100_000).ignore_eos(true)).unwrap()
    };
    c.remove("m").unwrap(); // cancels the run, which stays readable
    let mut run = run;
    assert_eq!(run.wait().unwrap().finish_reason, "cancelled");
    assert_eq!(c.remove("m").unwrap_err().kind, "not_found");
    drop(c);
}

#[test]
fn runs_survive_their_client() {
    let run = {
        let c = Client::new().unwrap();
        let s = c.add_local("s", &LocalOptions::new(story_model())).unwrap();
        let run = s.query("Once upon a time", &TextOptions::new().max_tokens(100_000).ignore_eos(true)).unwrap();
        run
    }; // the client dropped: it cancelled the run
    let mut run = run;
    assert_eq!(run.wait().unwrap().finish_reason, "cancelled");
}

#[test]
fn concurrent_requests_from_threads() {
    let texts: Vec<String> = thread::scope(|s| {
        let hs: Vec<_> = (0..6).map(|_| s.spawn(|| {
            ep("story").query("Once upon a time", &greedy().max_tokens(16)).unwrap().wait().unwrap().text
        })).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(texts.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn next_timeout_polls() {
    let mut run = ep("long").query("Once upon a time", &TextOptions::new().max_tokens(100_000).ignore_eos(true)).unwrap();
    let mut got = 0;
    while got < 3 {
        if run.next_timeout(Duration::from_millis(50)).unwrap().is_some() {
            got += 1;
        }
    }
    drop(run); // cancels and frees
}

#[test]
fn thread_safety_follows_the_c_contract() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Client>();
    send_sync::<sipp::Endpoint<'static>>();
    send_sync::<sipp::Canceller>();
    send::<sipp::Run>();
}

#[test]
fn the_quickstart_example_runs() {
    // cargo test builds the examples beside the test binaries: target/debug/examples
    let exe = std::env::current_exe().unwrap();
    let example = exe.parent().unwrap().parent().unwrap().join("examples").join("quickstart");
    let out = std::process::Command::new(&example).env("SIPP_MODEL", chat_model()).output()
        .unwrap_or_else(|e| panic!("{}: {}", example.display(), e));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("finish: stop") || stdout.contains("finish: length"), "{}", stdout);
}

// ---- remote-only options and a gateway endpoint against a real sipp-gateway ----------------------

#[test]
fn remote_only_options_are_refused_by_local_endpoints_and_anthropic_has_no_query() {
    let e = ep("chat").chat(&[Message::user("Hi")], &TextOptions::new().extra_json(r#"{"presence_penalty": 0.5}"#))
        .unwrap_err();
    assert_eq!(e.kind, "invalid_argument");
    let e = ep("chat").embed_with("Hi", &EmbedOptions::new().extra_json(r#"{"dimensions": 8}"#)).unwrap_err();
    assert_eq!(e.kind, "invalid_argument");
    let c = Client::new().unwrap();
    let ant = c.add_provider("claude", &ProviderOptions::new(ProviderKind::Anthropic, "claude-x")
        .base_url("http://127.0.0.1:9/v1").api_key("sk-ant-unused").version("2023-06-01")).unwrap();
    assert_eq!(ant.query("Once", &TextOptions::new()).unwrap_err().kind, "unsupported");
    let e = c.add_provider("h", &ProviderOptions::new(ProviderKind::OpenAiCompatible, "m")
        .base_url("http://127.0.0.1:9/v1").header("Authorization", "Bearer x")).unwrap_err();
    assert!(e.kind == "invalid_argument" && e.message.contains("Authorization"), "{}", e);
    // Debug never shows a secret: each reads [redacted]
    let shown = format!("{:?} {:?}",
        ProviderOptions::new(ProviderKind::OpenAi, "m").api_key("sk-secret-1").header("X-K", "hv-secret-2"),
        GatewayOptions::new("http://127.0.0.1:1", "t").token("gw-secret-3").header("X-K", "hv-secret-4"));
    for s in ["sk-secret-1", "hv-secret-2", "gw-secret-3", "hv-secret-4"] {
        assert!(!shown.contains(s), "{}", shown);
    }
    assert_eq!(shown.matches("[redacted]").count(), 4, "{}", shown);
}

const GW_TOKEN: &str = "sk-gw-bind-rust-3e9f";
const GW_TOKEN_STORY_ONLY: &str = "sk-gw-story-only-71b0";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// sipp-gateway on free loopback ports: targets "local" (the chat model), "story" and "long" (the
/// story model with a shifting context: runs go on until cancelled); caller "app" (GW_TOKEN) may
/// use all, caller "story" only "story". Stopped on drop.
struct Gateway {
    proc: std::process::Child,
    url: String,
}

impl Gateway {
    fn start() -> Gateway {
        let (port, mport) = (free_port(), free_port());
        let dir = std::env::temp_dir().join(format!("sipp-rust-gw-{}-{}", std::process::id(), port));
        std::fs::create_dir_all(&dir).unwrap();
        let rt = "[targets.runtime]\nn_ctx = 256\nn_parallel = 2\nn_threads = 1\n";
        let target = |name: &str, model: PathBuf, runtime: &str| {
            format!("[[targets]]\nname = \"{}\"\ntype = \"local\"\nmodel = \"{}\"\nbackend = \"cpu\"\n{}\n",
                    name, model.display(), runtime)
        };
        let config = dir.join("gateway.toml");
        std::fs::write(&config, format!(
            "public_bind = \"127.0.0.1:{}\"\nmanagement_bind = \"127.0.0.1:{}\"\n\n{}{}{}{}",
            port, mport, target("local", chat_model(), rt), target("story", story_model(), rt),
            target("long", story_model(), "[targets.runtime]\nn_ctx = 128\nn_threads = 1\ncontext_shift = true\n"),
            "[[tokens]]\nenv = \"GW_TOK_APP\"\ncaller = \"app\"\n\n\
             [[tokens]]\nenv = \"GW_TOK_STORY\"\ncaller = \"story\"\ntargets = [\"story\"]\n")).unwrap();
        let bin = std::env::var("SIPP_BIN_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../build/bin"));
        let log = std::fs::File::create(dir.join("gateway.log")).unwrap();
        let mut cmd = std::process::Command::new(bin.join("sipp-gateway"));
        cmd.args(["serve", "--config"]).arg(&config).env("GW_TOK_APP", GW_TOKEN)
            .env("GW_TOK_STORY", GW_TOKEN_STORY_ONLY).stdout(std::process::Stdio::null()).stderr(log);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("SIPP_") {
                cmd.env_remove(k);
            }
        }
        let mut gw = Gateway { proc: cmd.spawn().expect("sipp-gateway"), url: format!("http://127.0.0.1:{}", port) };
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !ready(mport) {
            let exited = gw.proc.try_wait().unwrap().is_some();
            if exited || std::time::Instant::now() > deadline {
                gw.stop();
                panic!("sipp-gateway did not start: {}",
                       std::fs::read_to_string(dir.join("gateway.log")).unwrap_or_default());
            }
            thread::sleep(Duration::from_millis(50));
        }
        gw
    }

    fn stop(&mut self) {
        if let Ok(None) = self.proc.try_wait() {
            // SIGTERM, so the gateway drains and exits on its own
            let _ = std::process::Command::new("kill").arg(self.proc.id().to_string()).status();
            for _ in 0..200 {
                if let Ok(Some(_)) = self.proc.try_wait() {
                    return;
                }
                thread::sleep(Duration::from_millis(50));
            }
            let _ = self.proc.kill();
            let _ = self.proc.wait();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}

/// GET /readyz on the management port answers 200 (both local targets loaded).
fn ready(mport: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", mport)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200")
}

#[test]
fn gateway_endpoint_against_a_real_sipp_gateway() {
    let gw = Gateway::start();
    let c = Client::new().unwrap();

    // the same answers as the local endpoint at temperature 0, streamed
    let remote = c.add_gateway("gw", &GatewayOptions::new(&gw.url, "local").token(GW_TOKEN)).unwrap();
    for op in ["chat", "query"] {
        let opts = greedy().max_tokens(16).request_id(format!("rust-{}-1", op));
        let (mut run, local) = if op == "chat" {
            let m = [Message::user("Do you like to play outside?")];
            (remote.chat(&m, &opts).unwrap(), ep("chat").chat(&m, &greedy().max_tokens(16)).unwrap().wait().unwrap())
        } else {
            (remote.query("Once upon a time", &opts).unwrap(),
             ep("chat").query("Once upon a time", &greedy().max_tokens(16)).unwrap().wait().unwrap())
        };
        let batches: Vec<String> = (&mut run).map(|b| b.unwrap().text).collect();
        let r = run.wait().unwrap();
        assert_eq!(r.text, local.text, "{}", op);
        assert!(!batches.is_empty()); // how many depends on scheduling
        assert_eq!(batches.concat(), r.text);
        assert_eq!((r.http_status, r.request_id.as_str(), r.error_code.as_str()), (200, format!("rust-{}-1", op).as_str(), ""));
        assert_eq!(r.usage.output_tokens, local.usage.output_tokens);
    }
    let a = remote.embed("hello world", true).unwrap().wait().unwrap().embedding.unwrap();
    let b = ep("chat").embed("hello world", true).unwrap().wait().unwrap().embedding.unwrap();
    assert_eq!(a.len(), b.len());
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5));

    // cancel mid-stream, from another thread; the token read from the environment
    std::env::set_var("RUST_GW_TOKEN", GW_TOKEN);
    let long = c.add_gateway("long", &GatewayOptions::new(&gw.url, "long").token_env("RUST_GW_TOKEN")).unwrap();
    let mut run = long.query("Once upon a time", &TextOptions::new().max_tokens(4000)).unwrap();
    let first = run.next().unwrap().unwrap().text;
    let canceller = run.canceller();
    thread::spawn(move || canceller.cancel()).join().unwrap();
    let r = run.wait().unwrap();
    assert_eq!(r.finish_reason, "cancelled");
    assert!(!first.is_empty() && r.text.starts_with(&first));

    // 401 and 403 as errors with kind, code and HTTP status; the token never shows
    let wrong = c.add_gateway("wrong", &GatewayOptions::new(&gw.url, "local").token("sk-wrong-999")).unwrap();
    let mut run = wrong.chat(&[Message::user("Hi")], &TextOptions::new().max_tokens(4)).unwrap();
    let e = (&mut run).find_map(|b| b.err()).expect("an error");
    assert_eq!((e.kind, e.code.as_str(), e.http_status), ("authentication", "authentication", 401));
    assert!(!format!("{} {:?}", e, e).contains("sk-wrong-999"));
    let denied = c.add_gateway("denied", &GatewayOptions::new(&gw.url, "local").token(GW_TOKEN_STORY_ONLY)).unwrap();
    let e = denied.chat(&[Message::user("Hi")], &TextOptions::new().max_tokens(4)).unwrap().wait().unwrap_err();
    assert_eq!((e.kind, e.code.as_str(), e.http_status), ("authorization", "authorization", 403));
    assert!(!e.request_id.is_empty());
    let e = denied.query("x", &TextOptions::new().grammar("root ::= \"a\"")).unwrap_err();
    assert!(e.kind == "invalid_argument" && e.message.contains("grammar"), "{}", e);
    // header auth in a header the gateway does not take (it takes Bearer and x-api-key): 401
    let hdr = c.add_gateway("hdr", &GatewayOptions::new(&gw.url, "local")
        .auth(GatewayAuth::Header("X-Token".into())).token(GW_TOKEN)).unwrap();
    let e = hdr.chat(&[Message::user("Hi")], &TextOptions::new().max_tokens(4)).unwrap().wait().unwrap_err();
    assert_eq!((e.kind, e.http_status), ("authentication", 401));

    // the quick-start example: the same answer locally and through the gateway
    let exe = std::env::current_exe().unwrap();
    let example = exe.parent().unwrap().parent().unwrap().join("examples").join("quickstart");
    let out = std::process::Command::new(&example).env("SIPP_MODEL", chat_model())
        .env("SIPP_GATEWAY_URL", &gw.url).env("SIPP_GATEWAY_TARGET", "local").env("SIPP_GATEWAY_TOKEN", GW_TOKEN)
        .output().unwrap_or_else(|e| panic!("{}: {}", example.display(), e));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let answer = |id: &str| -> String {
        let tag = format!("\n[{}] finish: ", id);
        let end = stdout.find(&tag).unwrap_or_else(|| panic!("no [{}] in {}", id, stdout));
        stdout[..end].rsplit('\n').next().unwrap().to_string()
    };
    assert!(!answer("local").is_empty());
    assert_eq!(answer("gateway"), answer("local"));
}

#[test]
fn estimate_then_policy_keeps_a_warm_request_local() {
    let story = ep("story");
    let opts = greedy().max_tokens(4).context_key("rs-route");
    let first = "Once upon a time there was a little girl named Lily.";
    let cold = story.estimate_query(first, &opts).unwrap();
    assert!(cold.local && cold.loaded && cold.healthy);
    assert!(cold.prompt_tokens > 5);
    assert_eq!((cold.cached_tokens, cold.cache_source), (0, "none"));
    let answer = story.query(first, &opts).unwrap().wait().unwrap();
    assert_eq!(answer.usage.input_tokens, cold.prompt_tokens);
    let warm = story.estimate_query(&format!("{}{} She", first, answer.text), &opts).unwrap();
    assert_eq!(warm.cache_source, "live");
    assert!(warm.cached_tokens >= cold.prompt_tokens);
    assert_eq!(warm.ttft_ms.source, FigureSource::Predicted);

    let c = Client::new().unwrap();
    let cloud = c.add_provider("cloud", &ProviderOptions::new(ProviderKind::OpenAiCompatible, "m")
        .base_url("http://127.0.0.1:9/v1").allow_private_network(true)).unwrap();
    cloud.set_prices(Some(3.0), Some(15.0)).unwrap();
    let remote = cloud.estimate_chat(&[Message::user("hi")], &TextOptions::new().max_tokens(4)).unwrap();
    assert!(!remote.local);
    assert_eq!(remote.price_input_per_mtok, Figure { value: 3.0, samples: 0, source: FigureSource::Configured });
    assert!(!remote.ttft_ms.is_known());

    let pol = Policy::new(&[Rule::LocalOnlyTag("private".into()), Rule::FitContext,
                            Rule::PreferWarm(0.5)]).unwrap();
    let ch = pol.choose(&[(&cloud, &remote), (&story, &warm)], &[], 4).unwrap();
    assert_eq!(ch.index, Some(1));
    assert!(ch.reasons.contains("prefer_warm: chose story"), "{}", ch.reasons);
    assert_eq!(pol.choose(&[(&cloud, &remote), (&story, &cold)], &[], 4).unwrap().index, Some(0));
    let ch = pol.choose(&[(&cloud, &remote)], &["private"], 4).unwrap();
    assert_eq!((ch.index, ch.dropped.clone()), (None, vec![0]));
    assert!(ch.reasons.contains("tagged 'private'"), "{}", ch.reasons);
    // an estimate the app builds itself
    let built = Estimate { local: true, loaded: true, healthy: true, prompt_tokens: 100,
                           cached_tokens: 90, cache_source: "snapshot", ..Default::default() };
    let ch = pol.choose(&[(&cloud, &remote), (&story, &built)], &[], 4).unwrap();
    assert!(ch.reasons.contains("90 of 100 prompt tokens cached (snapshot)"), "{}", ch.reasons);
    let e = Policy::new(&[Rule::PreferWarm(2.0)]).unwrap_err();
    assert!(e.kind == "invalid_argument" && e.message.contains("fraction"), "{}", e);
}

//! The Rust binding against the real library and the tiny models.
use std::path::PathBuf;
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

use sipp::{sys, Client, LocalOptions, Message, TextOptions};

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

#[test]
fn struct_sizes_match_the_c_layout() {
    let path = match std::env::var("SIPP_ABI_LAYOUT") {
        Ok(p) => p,
        Err(_) => return, // built by CMake; ctest sets it
    };
    let out = std::process::Command::new(path).output().unwrap();
    let json = String::from_utf8(out.stdout).unwrap();
    let size_of = |name: &str| -> usize {
        let key = format!("\"{}\": {{\"size\": ", name);
        let at = json.find(&key).unwrap_or_else(|| panic!("{} missing", name)) + key.len();
        json[at..].split(',').next().unwrap().trim().parse().unwrap()
    };
    use std::mem::size_of as sz;
    assert_eq!(sz::<sys::sipp_error>(), size_of("sipp_error"));
    assert_eq!(sz::<sys::sipp_client_params>(), size_of("sipp_client_params"));
    assert_eq!(sz::<sys::sipp_local_params>(), size_of("sipp_local_params"));
    assert_eq!(sz::<sys::sipp_provider_params>(), size_of("sipp_provider_params"));
    assert_eq!(sz::<sys::sipp_endpoint_info>(), size_of("sipp_endpoint_info"));
    assert_eq!(sz::<sys::sipp_engine_stats>(), size_of("sipp_engine_stats"));
    assert_eq!(sz::<sys::sipp_text_params>(), size_of("sipp_text_params"));
    assert_eq!(sz::<sys::sipp_message>(), size_of("sipp_message"));
    assert_eq!(sz::<sys::sipp_embed_params>(), size_of("sipp_embed_params"));
    assert_eq!(sz::<sys::sipp_usage>(), size_of("sipp_usage"));
    assert_eq!(sz::<sys::sipp_stats>(), size_of("sipp_stats"));
    assert_eq!(sz::<sys::sipp_response>(), size_of("sipp_response"));
    assert_eq!(sz::<sys::sipp_token_batch>(), size_of("sipp_token_batch"));
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

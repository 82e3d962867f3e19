//! The draft check and draft-then-audit (sipp_policy_check_draft, sipp_route_draft_audit) in the
//! Rust binding: a local tiny model drafts, an OpenAI-compatible peer on loopback audits.
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;

use sipp::{AuditOutcome, Client, LocalOptions, Message, Policy, ProviderKind, ProviderOptions,
           Rule, TextOptions};

fn chat_model() -> PathBuf {
    let dir = match std::env::var_os("SIPP_TEST_MODELS_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models"),
    };
    dir.join("tinystories-instruct-3m-soda-chat-Q4_0.gguf")
}

#[derive(Clone, Copy)]
enum Mode {
    /// streams "audited answer" and ends
    Answer,
    /// streams "Hel", then the connection closes
    OneToken,
    /// 503 before any token
    Busy,
}

/// The C test's peer on loopback; it keeps the request bodies it got. Serves until the test
/// process ends (a thread blocked in accept).
struct Peer {
    url: String,
    bodies: Arc<Mutex<Vec<String>>>,
}

fn peer(mode: Mode) -> Peer {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}/v1", l.local_addr().unwrap().port());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&bodies);
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            // the whole request (headers and Content-Length bytes of body) before answering
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                let n = s.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break String::new();
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text[..end].lines()
                        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:")
                                  .map(|v| v.trim().parse::<usize>().unwrap_or(0)))
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                    }
                }
            };
            seen.lock().unwrap().push(body);
            let answer = match mode {
                Mode::Busy => "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
                               Content-Length: 45\r\nConnection: close\r\n\r\n\
                               {\"error\":{\"message\":\"overloaded\",\"type\":\"x\"}}".to_string(),
                Mode::OneToken => "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n\
                                   data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"logprobs\":\
                                   {\"content\":[{\"token\":\"Hel\",\"logprob\":-0.1,\"top_logprobs\":[]}]},\
                                   \"finish_reason\":null}]}\n\n".to_string(),
                Mode::Answer => "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n\
                                 data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"audited answer\"},\
                                 \"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n".to_string(),
            };
            let _ = s.write_all(answer.as_bytes());
            let _ = s.shutdown(std::net::Shutdown::Write);
            while s.read(&mut chunk).map(|n| n > 0).unwrap_or(false) {}
        }
    });
    Peer { url, bodies }
}

fn provider<'c>(c: &'c Client, id: &str, p: &Peer) -> sipp::Endpoint<'c> {
    c.add_provider(id, &ProviderOptions::new(ProviderKind::OpenAiCompatible, "m")
        .base_url(p.url.clone()).allow_private_network(true)).unwrap()
}

#[test]
fn draft_audit_keeps_a_confident_draft_and_escalates_an_unsure_one() {
    let c = Client::new().unwrap();
    let chat = c.add_local("chat", &LocalOptions::new(chat_model()).n_ctx(256).n_threads(1)).unwrap();
    let cloud_peer = peer(Mode::Answer);
    let cloud = provider(&c, "cloud", &cloud_peer);
    let question = "What did the cat see in the garden?";
    let q = [Message::user(question)];
    let greedy = TextOptions::new().temperature(0.0).max_tokens(12);
    let draft = chat.chat(&q, &greedy.clone().logprobs(true)).unwrap().wait().unwrap();
    let n = draft.logprobs.len();
    let conf = (draft.logprobs.iter().map(|t| t.logprob as f64).sum::<f64>() / n as f64).exp();
    assert!(n > 0 && conf > 0.0 && conf < 1.0);
    let lax = Policy::new(&[Rule::EscalateLowConfidence(conf * 0.9)]).unwrap();
    let strict = Policy::new(&[Rule::EscalateLowConfidence((conf + 1.0) / 2.0)]).unwrap();

    // the draft check on a response and on a run
    let d = lax.check_draft(&draft).unwrap();
    assert_eq!(d.outcome, AuditOutcome::Draft);
    assert!((d.confidence - conf).abs() < 1e-5 * conf && d.n_tokens as usize == n);
    assert!(d.reasons.contains("the draft stands"), "{}", d.reasons);
    assert_eq!(strict.check_draft(&draft).unwrap().outcome, AuditOutcome::Escalated);
    let mut bare = chat.chat(&q, &greedy).unwrap(); // no log-probabilities
    let d = lax.check_draft_run(&mut bare).unwrap();
    assert!(d.outcome == AuditOutcome::Escalated && d.confidence.is_nan());
    assert!(d.reasons.contains("no token log-probabilities"), "{}", d.reasons);
    assert_eq!(bare.wait().unwrap().text, draft.text);
    let none = Policy::new(&[Rule::FitContext]).unwrap();
    assert_eq!(none.check_draft(&draft).unwrap().outcome, AuditOutcome::Draft);

    // confident: the draft stands, the cloud is not asked
    let opts = greedy.clone().context_key("file:garden.txt");
    let (mut run, d) = lax.draft_audit(&chat, &cloud, &q, &opts, true).unwrap();
    assert_eq!(d.outcome, AuditOutcome::Draft);
    assert_eq!(run.wait().unwrap().text, draft.text);
    assert!(cloud_peer.bodies.lock().unwrap().is_empty());
    // unsure: the question and the draft go to the cloud; only its answer is read
    let (mut run, d) = strict.draft_audit(&chat, &cloud, &q, &opts, true).unwrap();
    assert_eq!(d.outcome, AuditOutcome::Escalated);
    assert!(d.reasons.contains("escalated to the target with the draft"), "{}", d.reasons);
    let streamed: String = run.by_ref().map(|b| b.unwrap().text).collect();
    assert_eq!(streamed, "audited answer");
    assert_eq!(run.wait().unwrap().text, "audited answer");
    {
        let bodies = cloud_peer.bodies.lock().unwrap();
        assert_eq!(bodies.len(), 1);
        assert!(bodies[0].contains(question), "{}", bodies[0]);
        let escaped = format!("Draft:\\n{}", draft.text.replace('"', "\\\""));
        assert!(bodies[0].contains(&escaped), "{}", bodies[0]);
        assert!(!bodies[0].contains("garden.txt"), "{}", bodies[0]); // no local cache hint
    }
    // without the draft: the question only
    let (mut run, d) = strict.draft_audit(&chat, &cloud, &q, &opts, false).unwrap();
    assert_eq!(run.wait().unwrap().text, "audited answer");
    assert!(d.reasons.contains("(question only)"), "{}", d.reasons);
    assert!(!cloud_peer.bodies.lock().unwrap()[1].contains("Draft:"));
}

#[test]
fn draft_audit_never_switches_a_stream() {
    let c = Client::new().unwrap();
    let (broken, busy, target) = (peer(Mode::OneToken), peer(Mode::Busy), peer(Mode::Answer));
    let (b, rf, t) = (provider(&c, "broken", &broken), provider(&c, "busy", &busy),
                      provider(&c, "t", &target));
    let pol = Policy::new(&[Rule::EscalateLowConfidence(0.99)]).unwrap();
    let hi = [Message::user("hi")];
    let opts = TextOptions::new().max_tokens(8);
    // failed after its first token: returned failed, not sent on
    let (mut run, d) = pol.draft_audit(&b, &t, &hi, &opts, true).unwrap();
    assert_eq!(d.outcome, AuditOutcome::DraftFailed);
    assert!(!d.retry_safe);
    assert!(run.wait().is_err());
    assert_eq!(pol.check_draft_run(&mut run).unwrap().outcome, AuditOutcome::DraftFailed);
    // refused before any token: not sent on either, but the app may
    let (mut run, d) = pol.draft_audit(&rf, &t, &hi, &opts, true).unwrap();
    assert!(d.outcome == AuditOutcome::DraftFailed && d.retry_safe);
    assert!(d.reasons.contains("before any output token"), "{}", d.reasons);
    assert!(run.wait().is_err());
    assert!(target.bodies.lock().unwrap().is_empty()); // Sipp moved nothing
    // refused at submission: an error, nothing sent anywhere
    let e = pol.draft_audit(&b, &t, &hi, &TextOptions::new().max_tokens(0), true).unwrap_err();
    assert_eq!(e.kind, "invalid_argument");
    assert!(target.bodies.lock().unwrap().is_empty());
    assert_eq!(broken.bodies.lock().unwrap().len(), 1);
}

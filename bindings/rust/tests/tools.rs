//! Tools, tool calls, results and deltas in the Rust binding (issue 18), against the scripted
//! OpenAI-shaped peer (tests/e2e/fault_server.py, run as a child: it prints its port, then each
//! request as a JSON line). Its "tools" scenario answers with reasoning, text and two calls, and
//! with the final text once the results come back.
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};

use sipp::{Client, DeltaKind, Message, ProviderKind, ProviderOptions, ReasoningMode, TextOptions,
           Tool, ToolCall, ToolChoice};

struct FaultServer {
    child: Child,
    out: BufReader<ChildStdout>,
    port: u16,
}

impl FaultServer {
    fn start() -> FaultServer {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e/fault_server.py");
        let mut child = Command::new("/usr/bin/python3").arg(script).stdin(Stdio::piped())
            .stdout(Stdio::piped()).spawn().expect("python3");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        FaultServer { child, out, port: line.trim().parse().expect("a port") }
    }
    fn url(&self, scenario: &str) -> String {
        format!("http://127.0.0.1:{}/{}/v1", self.port, scenario)
    }
    /// The JSON line of the next request the server got.
    fn next_request(&mut self) -> String {
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        line
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        drop(self.child.stdin.take()); // it ends when its stdin closes
        let _ = self.child.wait();
    }
}

fn weather() -> Tool {
    Tool::new("get_weather", "The weather now, in a unit",
              r#"{"type":"object","properties":{"unit":{"enum":["celsius","fahrenheit"]}},"required":["unit"]}"#)
}

fn time() -> Tool {
    Tool::new("get_time", "The time", r#"{"type":"object"}"#)
}

#[test]
fn calls_deltas_results_and_the_agent_loop_example() {
    let mut srv = FaultServer::start();
    let client = Client::new().unwrap();
    let ep = client.add_provider("tools", &ProviderOptions::new(ProviderKind::OpenAiCompatible, "m")
        .base_url(srv.url("tools")).allow_private_network(true)).unwrap();
    let opts = TextOptions::new().tool(weather()).tool(time()).tool_choice(ToolChoice::Required);
    let mut run = ep.chat(&[Message::user("Weather and time?")], &opts).unwrap();
    let mut deltas = Vec::new();
    while let Some(d) = run.next_delta().unwrap() {
        deltas.push(d);
    }
    let r = run.wait().unwrap();
    assert_eq!(r.finish_reason, "tool_calls");
    assert_eq!((r.text.as_str(), r.reasoning.as_str()), ("Checking.", "Let me think"));
    assert_eq!(r.tool_calls, vec![
        ToolCall { id: "call_a".into(), name: "get_weather".into(), arguments: r#"{"unit": "celsius"}"#.into() },
        ToolCall { id: "call_b".into(), name: "get_time".into(), arguments: r#"{"zone": "utc"}"#.into() },
    ]);
    assert_eq!(deltas[0].kind, DeltaKind::Reasoning);
    assert_eq!(deltas[1].kind, DeltaKind::Content);
    let first = &deltas[2];
    assert_eq!((first.kind, first.tool_id.as_deref(), first.tool_name.as_deref()),
               (DeltaKind::ToolCall, Some("call_a"), Some("get_weather")));
    let args0: String = deltas.iter().filter(|d| d.kind == DeltaKind::ToolCall && d.tool_index == 0)
        .map(|d| d.text.as_str()).collect();
    assert_eq!(args0, r#"{"unit": "celsius"}"#);
    let req = srv.next_request();
    assert!(req.contains(r#""tool_choice": "required""#), "{}", req);

    // the round trip: the calls and their results go back; a named choice, reasoning inline
    let mut messages = vec![Message::user("Weather and time?"), r.message()];
    messages.extend(r.tool_calls.iter().map(|c| Message::tool_result(c.id.clone(), "21 C")));
    let opts = TextOptions::new().tool(weather()).tool(time())
        .tool_choice(ToolChoice::Named("get_time".into())).parallel_tool_calls(false)
        .reasoning(ReasoningMode::Inline);
    let fin = ep.chat(&messages, &opts).unwrap().wait().unwrap();
    assert_eq!((fin.finish_reason, fin.text.as_str()), ("stop", "It is 21 C."));
    assert!(fin.tool_calls.is_empty());
    let req = srv.next_request();
    assert!(req.contains(r#""tool_call_id": "call_a""#) && req.contains(r#""name": "get_time"}}"#)
            && req.contains(r#""parallel_tool_calls": false"#), "{}", req);

    // bad input: a clear invalid_argument before anything is sent
    let e = ep.chat(&[Message::user("x")], &TextOptions::new().tool(weather())
        .tool_choice(ToolChoice::Named("nope".into()))).unwrap_err();
    assert!(e.kind == "invalid_argument" && e.message.contains("tool_choice"), "{}", e);
    let e = ep.chat(&[Message::user("x"), Message::tool_result("unknown", "r")],
                    &TextOptions::new().tool(weather())).unwrap_err();
    assert_eq!(e.kind, "invalid_argument");

    // the agent-loop example (cargo test builds it beside the test binaries)
    let exe = std::env::current_exe().unwrap();
    let example = exe.parent().unwrap().parent().unwrap().join("examples").join("agent_loop");
    let out = Command::new(&example).env("SIPP_REMOTE_URL", srv.url("tools")).output()
        .unwrap_or_else(|e| panic!("{}: {}", example.display(), e));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(r#"[get_weather({"unit": "celsius"}) -> 21 C]"#), "{}", stdout);
    assert!(stdout.contains("It is 21 C.\n[answer after 1 tool round(s)]"), "{}", stdout);
}

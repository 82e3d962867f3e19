//! Agent loop: offer the model tools, run the calls it makes with local functions, send the
//! results back, print the answer. The same code on a local model (a chat template with tool
//! support) or an OpenAI-compatible server.
//!
//!     SIPP_MODEL=path/to/model.gguf cargo run --example agent_loop
//!     SIPP_REMOTE_URL=http://127.0.0.1:8080/v1 cargo run --example agent_loop
use sipp::{Client, DeltaKind, LocalOptions, Message, ProviderKind, ProviderOptions, TextOptions,
           Tool};

/// The local functions the model may call; arguments arrive as JSON text.
fn run_tool(name: &str, arguments: &str) -> String {
    match name {
        "get_weather" if arguments.contains("fahrenheit") => "70 F".into(),
        "get_weather" => "21 C".into(),
        "get_time" => "12:00".into(),
        _ => format!("no tool named {}", name),
    }
}

fn main() -> Result<(), sipp::Error> {
    let client = Client::new()?;
    let ep = match std::env::var("SIPP_REMOTE_URL") {
        Ok(url) => client.add_provider("agent", &ProviderOptions::new(ProviderKind::OpenAiCompatible, "any")
            .base_url(url).allow_private_network(true))?,
        Err(_) => client.add_local("agent", &LocalOptions::new(
            std::env::var("SIPP_MODEL").unwrap_or_else(|_| "model.gguf".into())))?,
    };
    let options = TextOptions::new().max_tokens(256)
        .tool(Tool::new("get_weather", "The weather now, in a unit",
            r#"{"type":"object","properties":{"unit":{"enum":["celsius","fahrenheit"]}},"required":["unit"]}"#))
        .tool(Tool::new("get_time", "The time now in a zone",
            r#"{"type":"object","properties":{"zone":{"type":"string"}},"required":["zone"]}"#));
    let mut messages = vec![Message::user("What are the weather and the time?")];
    for turn in 0..4 { // a bound on the turns: a model may keep calling
        let mut run = ep.chat(&messages, &options)?;
        while let Some(d) = run.next_delta()? { // text as it comes; the calls are in the result
            if d.kind == DeltaKind::Content {
                print!("{}", d.text);
            }
        }
        let r = run.wait()?;
        if r.finish_reason != "tool_calls" {
            println!("\n[answer after {} tool round(s)]", turn);
            return Ok(());
        }
        messages.push(r.message()); // the assistant turn with its calls
        for call in &r.tool_calls {
            let result = run_tool(&call.name, &call.arguments);
            println!("\n[{}({}) -> {}]", call.name, call.arguments, result);
            messages.push(Message::tool_result(call.id.clone(), result));
        }
    }
    Ok(())
}

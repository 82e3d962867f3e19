//! Quick start: stream a chat answer from a local model, then the same call through a Sipp gateway
//! (and an OpenAI-compatible server) when one is given.
//!   SIPP_MODEL=path/to/model.gguf cargo run --offline --example quickstart
//!   SIPP_GATEWAY_URL=http://127.0.0.1:8080 SIPP_GATEWAY_TARGET=local SIPP_GATEWAY_TOKEN=... ...
//!   SIPP_REMOTE_URL=http://127.0.0.1:8080/v1 ...   # also ask an OpenAI-compatible server
use std::io::Write;

use sipp::{Client, GatewayOptions, LocalOptions, Message, ProviderKind, ProviderOptions, TextOptions};

fn main() -> Result<(), sipp::Error> {
    let client = Client::new()?;
    let model = std::env::var("SIPP_MODEL").unwrap_or_else(|_| "model.gguf".into());
    let mut endpoints = vec![client.add_local("local", &LocalOptions::new(model))?];
    if let Ok(url) = std::env::var("SIPP_GATEWAY_URL") {
        // the token comes from SIPP_GATEWAY_TOKEN unless .token() or .token_env() says otherwise
        let target = std::env::var("SIPP_GATEWAY_TARGET").unwrap_or_else(|_| "local".into());
        endpoints.push(client.add_gateway("gateway", &GatewayOptions::new(url, target))?);
    }
    if let Ok(url) = std::env::var("SIPP_REMOTE_URL") {
        let remote = ProviderOptions::new(ProviderKind::OpenAiCompatible, "any").base_url(url);
        endpoints.push(client.add_provider("remote", &remote)?);
    }
    for ep in &endpoints {
        // the same call, whichever endpoint answers
        let mut run = ep.chat(&[Message::user("Do you like to play outside?")],
                              &TextOptions::new().max_tokens(48).temperature(0.0))?;
        for batch in &mut run {
            print!("{}", batch?.text);
            std::io::stdout().flush().ok();
        }
        let r = run.wait()?;
        println!("\n[{}] finish: {}, {} tokens", ep.id(), r.finish_reason, r.usage.output_tokens);
    }
    Ok(())
}

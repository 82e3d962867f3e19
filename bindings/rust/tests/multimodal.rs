//! The Rust binding's image input (docs/multimodal.md): `TextOptions::image`, checked against
//! llama.cpp's own llama-mtmd-cli on the random-weight LLaVA pair that sipp-make-model writes
//! (the pair tests/e2e/test_multimodal.py uses). The images are 24-bit BMPs written here (no
//! zlib in std); the projector reads them as it reads PNGs.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use sipp::{Client, LocalOptions, Message, TextOptions, ToolCall};

const N_PREDICT: u32 = 12;
const SYSTEM: &str = "You look at pictures.";
const USER: &str = "Describe the picture.";

fn bin_dir() -> PathBuf {
    std::env::var_os("SIPP_BIN_DIR").map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../build/bin"))
}

fn models() -> PathBuf {
    std::env::var_os("SIPP_TEST_MODELS_DIR").map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models"))
}

/// A 24-bit BMP of a deterministic pattern (seed picks the pattern): the pixels of
/// test_multimodal.py's png(w, h, seed), rows stored bottom-up as BMP wants them.
fn bmp(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let row = (w * 3 + 3) & !3;
    let size = 54 + row * h;
    let mut b = Vec::with_capacity(size as usize);
    b.extend_from_slice(b"BM");
    for v in [size, 0, 54, 40, w, h] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&1u16.to_le_bytes()); // planes
    b.extend_from_slice(&24u16.to_le_bytes()); // bits per pixel
    for v in [0u32, row * h, 2835, 2835, 0, 0] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    for y in (0..h).rev() {
        for x in 0..w {
            b.extend_from_slice(&[((x ^ y) % 256) as u8, ((x * y + seed) % 256) as u8,
                                  ((x * 7 + y * 3 + seed * 11) % 256) as u8]);
        }
        b.resize(b.len() + (row - w * 3) as usize, 0);
    }
    b
}

/// The pair and two images, written once for this test binary.
fn pair() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        assert!(std::env::var_os("SIPP_LLAMA_SRC").is_some(),
                "SIPP_LLAMA_SRC must point at the llama.cpp source (ctest sets it)");
        let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("llava");
        std::fs::create_dir_all(&d).unwrap();
        for (shape, name) in [("llava-text", "text.gguf"), ("llava-mmproj", "mmproj.gguf")] {
            let out = Command::new(bin_dir().join("sipp-make-model"))
                .args(["--shape", shape, "--out"]).arg(d.join(name)).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
        std::fs::write(d.join("a.bmp"), bmp(64, 48, 1)).unwrap();
        std::fs::write(d.join("b.bmp"), bmp(40, 90, 2)).unwrap();
        d
    })
}

/// One client with the pair as "vision" (the test binary's tests share it).
fn client() -> &'static Client {
    static C: OnceLock<Client> = OnceLock::new();
    C.get_or_init(|| {
        let d = pair();
        let c = Client::new().unwrap();
        c.add_local("vision", &LocalOptions::new(d.join("text.gguf")).mmproj(d.join("mmproj.gguf"))
            .n_ctx(1024).n_threads(2)).unwrap();
        c
    })
}

/// llama-mtmd-cli's greedy text for one image and the user prompt (marker in front), with the
/// system prompt when `system`.
fn oracle(image: &str, system: bool) -> String {
    let server = std::env::var_os("SIPP_LLAMA_SERVER").map(PathBuf::from)
        .unwrap_or_else(|| bin_dir().join("llama-server"));
    let cli = server.parent().unwrap().join("llama-mtmd-cli");
    assert!(cli.exists(), "{} is missing: scripts/setup builds it", cli.display());
    let d = pair();
    let out = Command::new(&cli).arg("-m").arg(d.join("text.gguf")).arg("--mmproj")
        .arg(d.join("mmproj.gguf")).arg("--image").arg(d.join(image))
        .args(["-p", USER, "--temp", "0", "-n", &N_PREDICT.to_string(), "-t", "2"])
        .args(if system { vec!["-sys", SYSTEM] } else { vec![] })
        .env("OMP_WAIT_POLICY", "passive").stdin(Stdio::null()).stderr(Stdio::null()).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim_matches('\n').to_string()
}

/// The oracle comparisons run one at a time: no other request of this binary shares their
/// batches, as none shares llama-mtmd-cli's.
static SERIAL: Mutex<()> = Mutex::new(());

fn messages() -> Vec<Message> {
    vec![Message::new("system", SYSTEM), Message::new("user", USER)]
}

fn greedy() -> TextOptions {
    TextOptions::new().temperature(0.0).max_tokens(N_PREDICT)
}

fn image(name: &str) -> Vec<u8> {
    std::fs::read(pair().join(name)).unwrap()
}

#[test]
fn the_endpoint_reports_vision_from_its_projector() {
    let info = client().endpoint("vision").unwrap().info().unwrap();
    assert!(info.vision && !info.audio_in && !info.audio_out);
}

#[test]
fn chat_with_an_image_equals_llama_mtmd_cli() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ep = client().endpoint("vision").unwrap();
    let want = oracle("a.bmp", true);
    let r = ep.chat(&messages(), &greedy().image(image("a.bmp"))).unwrap().wait().unwrap();
    assert_eq!(r.text, want);
    assert_eq!(r.usage.output_tokens, N_PREDICT);
    assert_eq!(r.stats.media_chunks, 1);
    assert!(r.stats.encode_ms > 0.0);
    // another image steers the text elsewhere, so the match above means something
    let b = ep.chat(&messages(), &greedy().image(image("b.bmp"))).unwrap().wait().unwrap();
    assert_ne!(b.text, r.text);
    assert!(ep.stats().unwrap().media_encoded >= 2);
}

#[test]
fn query_the_image_takes_the_marker_of_the_raw_prompt() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ep = client().endpoint("vision").unwrap();
    // the prompt llama-mtmd-cli renders without a system prompt (ChatML)
    let raw = format!("<|im_start|>user\n<__media__>{}<|im_end|>\n<|im_start|>assistant\n", USER);
    for name in ["a.bmp", "b.bmp"] {
        let r = ep.query(&raw, &greedy().image(image(name))).unwrap().wait().unwrap();
        assert_eq!(r.text, oracle(name, false));
    }
}

#[test]
fn a_chat_with_tool_calls_and_results_carries_its_image_too() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ep = client().endpoint("vision").unwrap();
    // the tool parts send the chat through sipp_chat_ex; the image still goes to the last user turn
    let call = ToolCall { id: "c1".into(), name: "look".into(), arguments: "{}".into() };
    let mut history = messages();
    history.push(Message { tool_calls: vec![call], ..Message::assistant("") });
    history.push(Message::tool_result("c1", "a picture"));
    history.push(Message::new("user", USER));
    let r = ep.chat(&history, &greedy().max_tokens(4).image(image("a.bmp"))).unwrap().wait().unwrap();
    assert_eq!(r.stats.media_chunks, 1);
    assert!(r.stats.encode_ms > 0.0);
}

/// The error of a run that fails, at submission or at its end.
fn failure(ep: &sipp::Endpoint<'_>, msgs: &[Message], o: &TextOptions) -> sipp::Error {
    match ep.chat(msgs, o) {
        Err(e) => e,
        Ok(mut run) => run.wait().expect_err("the run did not fail"),
    }
}

#[test]
fn bad_images_are_errors_naming_the_problem() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ep = client().endpoint("vision").unwrap();
    let a = image("a.bmp");
    for (bytes, expect) in [(b"hello, I am not an image at all\n".repeat(10), "not an image"),
                            (a[..20].to_vec(), "header is truncated or corrupt"),
                            (Vec::new(), "empty (0 bytes)")] {
        let e = failure(&ep, &messages(), &greedy().image(bytes));
        assert_eq!(e.kind, "invalid_argument", "{}", e);
        assert!(e.message.contains(expect), "{}", e);
    }
    let two = greedy().image(a.clone()).image(image("b.bmp"));
    let e = match ep.query("<__media__> one marker for two images", &two) {
        Err(e) => e,
        Ok(mut run) => run.wait().expect_err("the run did not fail"),
    };
    assert!(e.message.contains("1 media marker(s) but 2 media part(s)"), "{}", e);
    // the endpoint goes on
    let r = ep.chat(&messages(), &greedy().max_tokens(2).image(a)).unwrap().wait().unwrap();
    assert_eq!(r.usage.output_tokens, 2);
}

#[test]
fn an_endpoint_without_a_projector_refuses_images_as_unsupported() {
    let c = Client::new().unwrap();
    let ep = c.add_local("text-only", &LocalOptions::new(models().join("tinystories-instruct-3m-soda-chat-Q4_0.gguf"))
        .n_ctx(256).n_threads(1)).unwrap();
    assert!(!ep.info().unwrap().vision);
    let e = failure(&ep, &[Message::new("user", "hi")], &TextOptions::new().max_tokens(2).image(bmp(8, 8, 1)));
    assert_eq!(e.kind, "unsupported", "{}", e);
    assert!(e.message.contains("without a projector (mmproj)"), "{}", e);
}

//! Sipp for Rust: a safe layer over libsipp's C API (include/sipp.h); raw declarations in [`sys`].
//!
//! ```no_run
//! use sipp::{Client, LocalOptions, Message, TextOptions};
//! let client = Client::new()?;
//! let ep = client.add_local("chat", &LocalOptions::new("model.gguf"))?;
//! let mut run = ep.chat(&[Message::user("Hello!")], &TextOptions::new().max_tokens(32))?;
//! for batch in &mut run {
//!     print!("{}", batch?.text);
//! }
//! println!("\n{}", run.wait()?.finish_reason);
//! // the same call through a Sipp gateway (token from $SIPP_GATEWAY_TOKEN)
//! let gw = client.add_gateway("gw", &sipp::GatewayOptions::new("http://127.0.0.1:8080", "local"))?;
//! match gw.chat(&[Message::user("Hello!")], &TextOptions::new().request_id("req-1"))?.wait() {
//!     Ok(r) => println!("{}", r.text),
//!     Err(e) => eprintln!("{} {} {}", e.kind, e.code, e.http_status), // authentication authentication 401
//! }
//! # Ok::<(), sipp::Error>(())
//! ```
//!
//! Threads, from the C contract: a [`Client`] and its [`Endpoint`]s are `Send + Sync` (requests
//! may start on any thread; the registry has its own lock). Freeing a client needs no other call
//! in flight, which `Drop` guarantees. Endpoints borrow the client, and only `&mut Client`
//! methods ([`Client::remove`], [`Client::replace_local`]) free one, so no endpoint can dangle.
//! A [`Run`] has one consumer (`&mut self`: iteration, [`Run::wait`]) and may move between
//! threads; [`Run::canceller`] gives a `Send + Sync` handle that cancels from anywhere. Runs do
//! not borrow the client: they stay readable after it is dropped (it cancels them).
#![warn(missing_docs)]

pub mod sys;

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::fmt;
use std::mem;
use std::os::raw::c_char;
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

// ---- errors -------------------------------------------------------------------------------------

/// A failed call or run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// The status name of sipp.h ("invalid_argument", "not_found", "rate_limited", ...).
    pub kind: &'static str,
    /// The status number of sipp.h.
    pub status: i32,
    /// One line of detail (never a secret).
    pub message: String,
    /// The remote peer's error code (`sipp_response.error_code`: a gateway envelope's
    /// "authentication", "authorization", "admission"..., an OpenAI `code`), or "".
    pub code: String,
    /// The HTTP status of a remote answer, or 0.
    pub http_status: u32,
    /// The errno or HTTP status a failing call reported (`sipp_error.subcode`), or 0.
    pub subcode: i32,
    /// Seconds the peer asked to wait (rate limits), or 0.
    pub retry_after_s: u32,
    /// The remote peer's request id, or "".
    pub request_id: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            f.write_str(self.kind)
        } else {
            write!(f, "{}: {}", self.kind, self.message)
        }
    }
}

impl std::error::Error for Error {}

/// `Result` of this crate.
pub type Result<T> = std::result::Result<T, Error>;

fn status_name(status: i32) -> &'static str {
    // SAFETY: sipp_status_name returns a static NUL-terminated string for any value.
    unsafe { CStr::from_ptr(sys::sipp_status_name(status)) }.to_str().unwrap_or("unknown")
}

impl Error {
    fn new(status: i32, message: impl Into<String>) -> Error {
        Error { kind: status_name(status), status, message: message.into(), code: String::new(),
                http_status: 0, subcode: 0, retry_after_s: 0, request_id: String::new() }
    }

    fn invalid(message: impl Into<String>) -> Error {
        Error::new(sys::SIPP_INVALID_ARGUMENT, message)
    }
}

fn c_chars(buf: &[c_char]) -> String {
    let bytes: Vec<u8> = buf.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn new_error() -> sys::sipp_error {
    sys::sipp_error { struct_size: mem::size_of::<sys::sipp_error>() as u32, code: 0, subcode: 0,
                      message: [0; sys::SIPP_ERROR_MESSAGE_CAP] }
}

fn check(status: sys::sipp_status, err: &sys::sipp_error) -> Result<()> {
    if status == sys::SIPP_OK {
        return Ok(());
    }
    let mut e = Error::new(status, c_chars(&err.message));
    e.subcode = err.subcode;
    Err(e)
}

/// A struct filled by its `sipp_*_init` with this crate's size; an error when the library is
/// older than this crate (it refuses a struct larger than its own).
fn init<T>(f: unsafe extern "C" fn(*mut T, usize) -> sys::sipp_status, what: &str) -> Result<T> {
    // SAFETY: the versioned structs are plain data for which all-zero is a valid value; the
    // library writes at most size_of::<T>() bytes.
    let mut v: T = unsafe { mem::zeroed() };
    if unsafe { f(&mut v, mem::size_of::<T>()) } != sys::SIPP_OK {
        return Err(Error::new(sys::SIPP_INVALID_ARGUMENT, format!(
            "libsipp {} is older than this crate (it refuses a {} of {} bytes)",
            version(), what, mem::size_of::<T>())));
    }
    Ok(v)
}

/// C strings and pointer arrays kept alive for one call.
#[derive(Default)]
struct Keep {
    strings: Vec<CString>,
    arrays: Vec<Vec<*const c_char>>,
    tools: Vec<Vec<sys::sipp_tool>>,
    calls: Vec<Vec<sys::sipp_tool_call>>,
}

impl Keep {
    fn opt(&mut self, v: &Option<String>, what: &str) -> Result<*const c_char> {
        match v {
            None => Ok(ptr::null()),
            Some(s) => self.str(s, what),
        }
    }

    fn str(&mut self, s: &str, what: &str) -> Result<*const c_char> {
        let c = cstring(s, what)?;
        let p = c.as_ptr();
        self.strings.push(c);
        Ok(p)
    }

    /// A C array of `items` (null and 0 when empty).
    fn array(&mut self, items: &[String], what: &str) -> Result<(*const *const c_char, usize)> {
        if items.is_empty() {
            return Ok((ptr::null(), 0));
        }
        let mut ptrs = Vec::with_capacity(items.len());
        for s in items {
            ptrs.push(self.str(s, what)?);
        }
        let p = ptrs.as_ptr();
        self.arrays.push(ptrs);
        Ok((p, items.len()))
    }
}

/// The C form of chat messages with tool calls and results (`sipp_chat_message`), alive while
/// `keep` is.
fn c_chat_messages(messages: &[Message], keep: &mut Keep) -> Result<Vec<sys::sipp_chat_message>> {
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        let mut calls = Vec::with_capacity(m.tool_calls.len());
        for c in &m.tool_calls {
            calls.push(sys::sipp_tool_call { id: keep.str(&c.id, "tool call id")?,
                                             name: keep.str(&c.name, "tool call name")?,
                                             arguments: keep.str(&c.arguments, "tool call arguments")? });
        }
        let (tool_calls, n_tool_calls) = if calls.is_empty() { (ptr::null(), 0) } else {
            let p = calls.as_ptr();
            let n = calls.len();
            keep.calls.push(calls);
            (p, n)
        };
        out.push(sys::sipp_chat_message {
            role: keep.str(&m.role, "role")?,
            content: keep.str(&m.content, "content")?,
            tool_calls,
            n_tool_calls,
            tool_call_id: keep.opt(&m.tool_call_id, "tool_call_id")?,
            reasoning: ptr::null(),
        });
    }
    Ok(out)
}

/// The C form of chat messages; the CStrings own the text the pointers point into, so keep
/// them alive as long as the messages are used.
fn c_messages(messages: &[Message]) -> Result<(Vec<sys::sipp_message>, Vec<CString>)> {
    let mut strings = Vec::with_capacity(messages.len() * 2);
    let mut cmsgs = Vec::with_capacity(messages.len());
    for m in messages {
        let role = cstring(&m.role, "role")?;
        let content = cstring(&m.content, "content")?;
        cmsgs.push(sys::sipp_message { role: role.as_ptr(), content: content.as_ptr() });
        strings.push(role);
        strings.push(content);
    }
    Ok((cmsgs, strings))
}

/// The index of the last user message (0 when there is none): where a chat's images go, as in
/// the Python and Node bindings.
fn last_user(messages: &[Message]) -> usize {
    messages.iter().rposition(|m| m.role == "user").unwrap_or(0)
}

fn cstring(s: &str, what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::invalid(format!("{} contains a NUL character", what)))
}

fn path_cstring(p: &Path, what: &str) -> Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::invalid(format!("{} contains a NUL character", what)))
}

/// Sets the log level of the whole process (`sipp_log_set`): messages at or above it go to
/// stderr, from every client and from llama.cpp.
pub fn set_log_level(level: LogLevel) {
    // SAFETY: no pointers; any thread.
    unsafe { sys::sipp_log_set(level as i32) }
}

/// The version of the loaded libsipp, "MAJOR.MINOR.PATCH".
pub fn version() -> &'static str {
    // SAFETY: a static string.
    unsafe { CStr::from_ptr(sys::sipp_version()) }.to_str().unwrap_or("")
}

// ---- options ------------------------------------------------------------------------------------

/// Declares chainable setters for `Option` fields: `.name(value)`; the fields after `into`
/// (strings, paths) take anything that converts: `.base_url("http://...")`.
macro_rules! setters {
    ($ty:ident { $($name:ident : $t:ty),* $(,)? } $(into { $($iname:ident : $it:ty),* $(,)? })?) => {
        impl $ty {
            $(
                #[doc = concat!("Sets `", stringify!($name), "` (see sipp.h).")]
                pub fn $name(mut self, v: $t) -> Self { self.$name = Some(v); self }
            )*
            $($(
                #[doc = concat!("Sets `", stringify!($iname), "` (see sipp.h).")]
                pub fn $iname(mut self, v: impl Into<$it>) -> Self { self.$iname = Some(v.into()); self }
            )*)?
        }
    };
}

/// Options of query and chat (`sipp_text_params`). `None` keeps the library's default.
#[derive(Clone, Debug, Default)]
#[allow(missing_docs)]
pub struct TextOptions {
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_k: Option<i32>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub seed: Option<u32>,
    pub stop: Vec<String>,
    pub context_key: Option<String>,
    pub cache_scope: Option<String>,
    pub grammar: Option<String>,
    pub json_schema: Option<String>,
    pub timeout_ms: Option<u32>,
    pub ignore_eos: Option<bool>,
    /// Remote only: a JSON object merged into the request body, e.g. `{"presence_penalty": 0.5}`
    /// (no serde needed: any JSON text; the library parses and checks it).
    pub extra_json: Option<String>,
    /// Remote only: sent as `x-request-id`.
    pub request_id: Option<String>,
    /// Each output token's log-probability (`Response::logprobs`).
    pub logprobs: Option<bool>,
    /// With `logprobs`: 0..=20 alternatives per token.
    pub top_logprobs: Option<u32>,
    /// Chat: tools the model may call (see [`TextOptions::tool`]).
    pub tools: Vec<Tool>,
    /// Which tools the model may or must call (default [`ToolChoice::Auto`]).
    pub tool_choice: Option<ToolChoice>,
    /// More than one call in an answer (default true).
    pub parallel_tool_calls: Option<bool>,
    /// What becomes of a thinking model's reasoning (default [`ReasoningMode::Separate`]).
    pub reasoning: Option<ReasoningMode>,
    /// Multimodal (docs/multimodal.md): encoded images (PNG, JPEG, GIF, BMP), one part each; in
    /// a chat they go to the last user message, at its `<__media__>` markers or in front of its
    /// text. A local endpoint needs a projector ([`LocalOptions::mmproj`]).
    pub images: Vec<Vec<u8>>,
}

// ---- tools and reasoning (issue 18) ---------------------------------------------------------------

/// A tool the model may call (`sipp_tool`): a name (`[A-Za-z0-9_-]`, 1-64 bytes), what it does,
/// and a JSON Schema of its arguments (an object schema, as JSON text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tool {
    /// the tool's name
    pub name: String,
    /// what it does, for the model
    pub description: String,
    /// the JSON Schema of its arguments
    pub parameters: String,
}

impl Tool {
    /// A tool with its argument schema as JSON text.
    pub fn new(name: impl Into<String>, description: impl Into<String>,
               parameters: impl Into<String>) -> Self {
        Tool { name: name.into(), description: description.into(), parameters: parameters.into() }
    }
}

/// A call the model made (`sipp_tool_call`), or one sent back in an assistant message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolCall {
    /// the call's id (a tool result names it)
    pub id: String,
    /// the tool's name
    pub name: String,
    /// the arguments, a JSON object as text
    pub arguments: String,
}

/// Which tools the model may or must call (`sipp_tool_choice`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolChoice {
    /// text or calls, the model decides
    Auto,
    /// no calls
    None,
    /// at least one call
    Required,
    /// a call of this tool
    Named(String),
}

/// What becomes of a thinking model's reasoning (`sipp_reasoning_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReasoningMode {
    /// into `Response::reasoning` and reasoning deltas
    Separate,
    /// left in the text
    Inline,
    /// discarded
    Drop,
}

/// What a stream delta carries (`sipp_delta_kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeltaKind {
    /// answer text
    Content,
    /// reasoning text
    Reasoning,
    /// a piece of a tool call
    ToolCall,
}

/// One piece of a chat's stream, from [`Run::next_delta`]. A call's first delta has its
/// `tool_id` and `tool_name`; later ones (same `tool_index`) carry pieces of its arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delta {
    /// what it carries
    pub kind: DeltaKind,
    /// content, reasoning or a piece of a call's arguments
    pub text: String,
    /// the call's index among the response's calls (tool-call deltas)
    pub tool_index: u32,
    /// the call's id, on its first delta
    pub tool_id: Option<String>,
    /// the tool's name, on its first delta
    pub tool_name: Option<String>,
}

setters!(TextOptions { max_tokens: u32, temperature: f32, top_k: i32, top_p: f32, min_p: f32,
                       repeat_penalty: f32, seed: u32, timeout_ms: u32, ignore_eos: bool,
                       logprobs: bool, top_logprobs: u32 }
         into { context_key: String, cache_scope: String, grammar: String, json_schema: String,
                extra_json: String, request_id: String });

/// Options of embed (`sipp_embed_params`). `None` keeps the library's default.
#[derive(Clone, Debug, Default)]
pub struct EmbedOptions {
    /// L2-normalise the vector (default true).
    pub normalize: Option<bool>,
    /// Remote only: a JSON object merged into the request body, e.g. `{"dimensions": 256}`.
    pub extra_json: Option<String>,
    /// Remote only: sent as `x-request-id`.
    pub request_id: Option<String>,
}

setters!(EmbedOptions { normalize: bool } into { extra_json: String, request_id: String });

impl EmbedOptions {
    /// All defaults.
    pub fn new() -> Self {
        Self::default()
    }
}

impl TextOptions {
    /// All defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a stop string.
    pub fn stop(mut self, s: impl Into<String>) -> Self {
        self.stop.push(s.into());
        self
    }

    /// Offers a tool to the model.
    pub fn tool(mut self, t: Tool) -> Self {
        self.tools.push(t);
        self
    }

    /// Which tools the model may or must call.
    pub fn tool_choice(mut self, c: ToolChoice) -> Self {
        self.tool_choice = Some(c);
        self
    }

    /// Allows (default) or forbids more than one call per answer.
    pub fn parallel_tool_calls(mut self, yes: bool) -> Self {
        self.parallel_tool_calls = Some(yes);
        self
    }

    /// What becomes of a thinking model's reasoning.
    pub fn reasoning(mut self, m: ReasoningMode) -> Self {
        self.reasoning = Some(m);
        self
    }

    /// Adds an image: the bytes of the encoded file.
    pub fn image(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.images.push(bytes.into());
        self
    }
}

/// C strings, media parts and the params struct built from TextOptions, alive for one call.
struct CTextParams {
    params: sys::sipp_text_params,
    _keep: Keep,
    _media: Vec<sys::sipp_media>,
}

impl TextOptions {
    /// The C params; the images become parts of messages[media_message] (query: ignored).
    fn to_c(&self, media_message: usize) -> Result<CTextParams> {
        let mut p = init(sys::sipp_text_params_init, "sipp_text_params")?;
        p.struct_size = mem::size_of::<sys::sipp_text_params>() as u32;
        macro_rules! copy { ($($f:ident),*) => { $( if let Some(v) = self.$f { p.$f = v; } )* } }
        copy!(max_tokens, temperature, top_k, top_p, min_p, repeat_penalty, seed, timeout_ms,
              ignore_eos, logprobs, top_logprobs);
        let mut keep = Keep::default();
        p.context_key = keep.opt(&self.context_key, "context_key")?;
        p.cache_scope = keep.opt(&self.cache_scope, "cache_scope")?;
        p.grammar = keep.opt(&self.grammar, "grammar")?;
        p.json_schema = keep.opt(&self.json_schema, "json_schema")?;
        p.extra_json = keep.opt(&self.extra_json, "extra_json")?;
        p.request_id = keep.opt(&self.request_id, "request_id")?;
        (p.stop, p.n_stop) = keep.array(&self.stop, "stop")?;
        if !self.tools.is_empty() {
            let mut tools = Vec::with_capacity(self.tools.len());
            for t in &self.tools {
                tools.push(sys::sipp_tool { name: keep.str(&t.name, "tool name")?,
                                            description: keep.str(&t.description, "tool description")?,
                                            parameters: keep.str(&t.parameters, "tool parameters")? });
            }
            p.tools = tools.as_ptr();
            p.n_tools = tools.len();
            keep.tools.push(tools);
        }
        match &self.tool_choice {
            None | Some(ToolChoice::Auto) => {}
            Some(ToolChoice::None) => p.tool_choice = 1,
            Some(ToolChoice::Required) => p.tool_choice = 2,
            Some(ToolChoice::Named(n)) => {
                p.tool_choice = 3;
                p.tool_choice_name = keep.str(n, "tool_choice")?;
            }
        }
        if let Some(v) = self.parallel_tool_calls {
            p.parallel_tool_calls = v;
        }
        if let Some(m) = self.reasoning {
            p.reasoning_mode = match m { ReasoningMode::Separate => 0, ReasoningMode::Inline => 1,
                                         ReasoningMode::Drop => 2 };
        }
        // the parts point into self.images, which outlives the call (the library reads the
        // bytes during it and keeps nothing)
        let media: Vec<sys::sipp_media> = self.images.iter().map(|b| sys::sipp_media {
            kind: 1, // SIPP_MEDIA_IMAGE
            data: b.as_ptr().cast(),
            len: b.len(),
            mime_type: ptr::null(),
            message_index: media_message,
        }).collect();
        if !media.is_empty() {
            p.media = media.as_ptr();
            p.n_media = media.len();
        }
        Ok(CTextParams { params: p, _keep: keep, _media: media })
    }
}

/// Builds LocalOptions from the settings of `sipp_local_params` (the numbers and booleans come
/// from its table, include/sipp_settings.h, through src/fields.rs); the strings are typed by hand.
macro_rules! local_options {
    ($(#[doc = $doc:literal] $name:ident : $t:ty),* $(,)?) => {
        /// A local GGUF model endpoint (`sipp_local_params`). `None` keeps the library's default.
        #[derive(Clone, Debug)]
        pub struct LocalOptions {
            /// The GGUF file, or a pulled model name.
            pub model_path: PathBuf,
            $(#[doc = $doc] pub $name: Option<$t>,)*
            /// Disk tier of prefix snapshots (survives restarts).
            pub cache_dir: Option<PathBuf>,
            /// Pin: the SHA-256 (64 hex digits) the model file must have, checked before loading.
            pub sha256: Option<String>,
            /// The model's projector GGUF (llama.cpp's mmproj): images in query and chat.
            pub mmproj: Option<PathBuf>,
        }

        setters!(LocalOptions { $($name: $t),* } into { cache_dir: PathBuf, sha256: String,
                                                        mmproj: PathBuf });

        impl LocalOptions {
            /// Defaults for the model at `model_path`.
            pub fn new(model_path: impl Into<PathBuf>) -> Self {
                LocalOptions { model_path: model_path.into(), $($name: None,)* cache_dir: None,
                               sha256: None, mmproj: None }
            }

            /// Copies the numbers and booleans that are set into `p`.
            fn copy_scalars(&self, p: &mut sys::sipp_local_params) {
                $(if let Some(v) = self.$name { p.$name = v; })*
            }
        }
    };
}
crate::sipp_local_scalars!(local_options);

/// Provider kinds (`sipp_provider_kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderKind {
    /// api.openai.com (or base_url)
    OpenAi,
    /// any OpenAI-shaped server
    OpenAiCompatible,
    /// Anthropic's messages API (chat only)
    Anthropic,
}

/// A provider endpoint (`sipp_provider_params`). `Debug` hides the key and header values.
#[derive(Clone)]
#[allow(missing_docs)]
pub struct ProviderOptions {
    pub kind: ProviderKind,
    pub model: String,
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    pub api_key_env: Option<String>,
    pub connect_timeout_ms: Option<u32>,
    pub request_timeout_ms: Option<u32>,
    pub idle_timeout_ms: Option<u32>,
    /// Anthropic only: the `anthropic-version` header.
    pub version: Option<String>,
    /// Static headers, "Name: value" lines (values are secrets).
    pub headers: Vec<String>,
    /// Allow private-network and link-local addresses (and plain http to them).
    pub allow_private_network: bool,
}

setters!(ProviderOptions { connect_timeout_ms: u32, request_timeout_ms: u32, idle_timeout_ms: u32 }
         into { base_url: String, api_key: String, api_key_env: String, version: String });

impl ProviderOptions {
    /// A provider of `kind` serving `model`.
    pub fn new(kind: ProviderKind, model: impl Into<String>) -> Self {
        ProviderOptions { kind, model: model.into(), base_url: None, api_key: None,
                          api_key_env: None, connect_timeout_ms: None, request_timeout_ms: None,
                          idle_timeout_ms: None, version: None, headers: Vec::new(),
                          allow_private_network: false }
    }

    /// Allows (or refuses, the default) private-network and link-local addresses.
    pub fn allow_private_network(mut self, yes: bool) -> Self {
        self.allow_private_network = yes;
        self
    }

    /// Adds a static header sent with every request.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push(format!("{}: {}", name, value));
        self
    }
}

/// Header lines with their values hidden, for `Debug`.
fn header_names(headers: &[String]) -> Vec<String> {
    headers.iter().map(|h| format!("{}: [redacted]", h.split(':').next().unwrap_or(""))).collect()
}

impl fmt::Debug for ProviderOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderOptions").field("kind", &self.kind).field("model", &self.model)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("api_key_env", &self.api_key_env).field("version", &self.version)
            .field("headers", &header_names(&self.headers)).finish_non_exhaustive()
    }
}

/// How a gateway endpoint authenticates (`sipp_gateway_auth`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GatewayAuth {
    /// no credentials
    None,
    /// `Authorization: Bearer <token>` (the default)
    Bearer,
    /// `<name>: <token>` (a proxy in front of the gateway)
    Header(String),
}

/// A Sipp gateway endpoint (`sipp_gateway_params`). `Debug` hides the token and header values.
#[derive(Clone)]
#[allow(missing_docs)]
pub struct GatewayOptions {
    /// The gateway's public listener, e.g. "https://gw.example.com".
    pub base_url: String,
    /// The gateway's target name.
    pub target: String,
    pub auth: GatewayAuth,
    /// The token; `None` reads it from `token_env` (default SIPP_GATEWAY_TOKEN).
    pub token: Option<String>,
    pub token_env: Option<String>,
    /// Static headers, "Name: value" lines (values are secrets).
    pub headers: Vec<String>,
    pub connect_timeout_ms: Option<u32>,
    pub request_timeout_ms: Option<u32>,
    pub idle_timeout_ms: Option<u32>,
    /// Allow private-network and link-local addresses (and plain http to them).
    pub allow_private_network: bool,
}

setters!(GatewayOptions { connect_timeout_ms: u32, request_timeout_ms: u32, idle_timeout_ms: u32 }
         into { token: String, token_env: String });

impl GatewayOptions {
    /// The gateway at `base_url`, its target `target`, bearer auth.
    pub fn new(base_url: impl Into<String>, target: impl Into<String>) -> Self {
        GatewayOptions { base_url: base_url.into(), target: target.into(), auth: GatewayAuth::Bearer,
                         token: None, token_env: None, headers: Vec::new(), connect_timeout_ms: None,
                         request_timeout_ms: None, idle_timeout_ms: None,
                         allow_private_network: false }
    }

    /// Allows (or refuses, the default) private-network and link-local addresses.
    pub fn allow_private_network(mut self, yes: bool) -> Self {
        self.allow_private_network = yes;
        self
    }

    /// Sets how the token is sent.
    pub fn auth(mut self, auth: GatewayAuth) -> Self {
        self.auth = auth;
        self
    }

    /// Adds a static header sent with every request.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push(format!("{}: {}", name, value));
        self
    }
}

impl fmt::Debug for GatewayOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayOptions").field("base_url", &self.base_url)
            .field("target", &self.target).field("auth", &self.auth)
            .field("token", &self.token.as_ref().map(|_| "[redacted]")).field("token_env", &self.token_env)
            .field("headers", &header_names(&self.headers)).finish_non_exhaustive()
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

/// A chat message; roles "system", "user", "assistant" and "tool" (a tool's result).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// "system", "user", "assistant" or "tool"
    pub role: String,
    /// the text (a tool message: the result)
    pub content: String,
    /// assistant: the calls it made ([`Response::message`])
    pub tool_calls: Vec<ToolCall>,
    /// tool: the id of the call this result answers
    pub tool_call_id: Option<String>,
}

impl Message {
    /// A message with any role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message { role: role.into(), content: content.into(), tool_calls: Vec::new(),
                  tool_call_id: None }
    }
    /// The result of tool call `call_id`.
    pub fn tool_result(call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Message { tool_call_id: Some(call_id.into()), ..Self::new("tool", content) }
    }
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

// ---- client -------------------------------------------------------------------------------------

/// A registry of endpoints (`sipp_client`). Dropping it cancels every run, stops the engines and
/// unloads the models.
pub struct Client {
    raw: *mut sys::sipp_client,
    ids: Mutex<HashSet<String>>,
}

// SAFETY: sipp.h: client calls are safe from any thread (the registry has a lock), except
// sipp_client_free, which Drop calls with no borrow (so no call) outstanding.
unsafe impl Send for Client {}
unsafe impl Sync for Client {}

/// Log levels of [`set_log_level`] and [`Client::with_log_level`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum LogLevel {
    None = 0,
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
}

impl Client {
    /// A client with default parameters.
    pub fn new() -> Result<Client> {
        Self::build(None)
    }

    /// A client, with the process's log level set to `level` (see [`set_log_level`]: the level
    /// is process-wide).
    pub fn with_log_level(level: LogLevel) -> Result<Client> {
        Self::build(Some(level))
    }

    fn build(level: Option<LogLevel>) -> Result<Client> {
        if let Some(l) = level {
            set_log_level(l); // the process's level, not this client's
        }
        let mut raw = ptr::null_mut();
        let mut err = new_error();
        // SAFETY: valid pointers for the call; NULL params are the defaults.
        check(unsafe { sys::sipp_client_new(ptr::null(), &mut raw, &mut err) }, &err)?;
        Ok(Client { raw, ids: Mutex::new(HashSet::new()) })
    }

    /// Reserves `id` for an add through `&self`: a taken id would make the library replace (free)
    /// an endpoint that a borrowed [`Endpoint`] may still use.
    fn reserve(&self, id: &str) -> Result<()> {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        if !ids.insert(id.to_string()) {
            return Err(Error::invalid(format!(
                "endpoint '{}' exists; replace it with a replace_* method or remove it first",
                id)));
        }
        Ok(())
    }

    fn unreserve(&self, id: &str) {
        self.ids.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }

    /// Registers a local GGUF model under a new `id` and loads it (blocking).
    pub fn add_local(&self, id: &str, options: &LocalOptions) -> Result<Endpoint<'_>> {
        self.reserve(id)?;
        let r = self.add_local_raw(id, options);
        if r.is_err() {
            self.unreserve(id);
        }
        r.map(|raw| Endpoint { client: self, raw, id: id.to_string() })
    }

    /// Registers a local model under `id`, replacing an endpoint of that id (its runs are
    /// cancelled). Takes `&mut self`: no endpoint of this client is borrowed meanwhile.
    pub fn replace_local(&mut self, id: &str, options: &LocalOptions) -> Result<Endpoint<'_>> {
        let raw = self.add_local_raw(id, options)?;
        self.ids.lock().unwrap_or_else(|e| e.into_inner()).insert(id.to_string());
        Ok(Endpoint { client: self, raw, id: id.to_string() })
    }

    fn add_local_raw(&self, id: &str, o: &LocalOptions) -> Result<*mut sys::sipp_endpoint> {
        let cid = cstring(id, "id")?;
        let path = path_cstring(&o.model_path, "model_path")?;
        let dir = match &o.cache_dir {
            Some(d) => Some(path_cstring(d, "cache_dir")?),
            None => None,
        };
        let pin = match &o.sha256 {
            Some(h) => Some(cstring(h, "sha256")?),
            None => None,
        };
        let mmproj = match &o.mmproj {
            Some(m) => Some(path_cstring(m, "mmproj")?),
            None => None,
        };
        let mut p = init(sys::sipp_local_params_init, "sipp_local_params")?;
        p.struct_size = mem::size_of::<sys::sipp_local_params>() as u32;
        p.model_path = path.as_ptr();
        o.copy_scalars(&mut p);
        if let Some(d) = &dir {
            p.cache_dir = d.as_ptr();
        }
        if let Some(h) = &pin {
            p.sha256 = h.as_ptr();
        }
        if let Some(m) = &mmproj {
            p.mmproj = m.as_ptr();
        }
        let mut raw = ptr::null_mut();
        let mut err = new_error();
        // SAFETY: the strings outlive the call, which copies them.
        check(unsafe { sys::sipp_client_add_local(self.raw, cid.as_ptr(), &p, &mut raw, &mut err) }, &err)?;
        Ok(raw)
    }

    /// Registers a provider endpoint under a new `id`. Nothing is sent until the first request.
    pub fn add_provider(&self, id: &str, options: &ProviderOptions) -> Result<Endpoint<'_>> {
        self.reserve(id)?;
        let r = self.add_provider_raw(id, options);
        if r.is_err() {
            self.unreserve(id);
        }
        r.map(|raw| Endpoint { client: self, raw, id: id.to_string() })
    }

    /// Registers a provider under `id`, replacing an endpoint of that id.
    pub fn replace_provider(&mut self, id: &str, options: &ProviderOptions) -> Result<Endpoint<'_>> {
        let raw = self.add_provider_raw(id, options)?;
        self.ids.lock().unwrap_or_else(|e| e.into_inner()).insert(id.to_string());
        Ok(Endpoint { client: self, raw, id: id.to_string() })
    }

    fn add_provider_raw(&self, id: &str, o: &ProviderOptions) -> Result<*mut sys::sipp_endpoint> {
        let cid = cstring(id, "id")?;
        let mut keep = Keep::default();
        let mut p = init(sys::sipp_provider_params_init, "sipp_provider_params")?;
        p.struct_size = mem::size_of::<sys::sipp_provider_params>() as u32;
        p.kind = match o.kind {
            ProviderKind::OpenAi => sys::SIPP_PROVIDER_OPENAI,
            ProviderKind::OpenAiCompatible => sys::SIPP_PROVIDER_OPENAI_COMPATIBLE,
            ProviderKind::Anthropic => sys::SIPP_PROVIDER_ANTHROPIC,
        };
        p.model = keep.str(&o.model, "model")?;
        p.base_url = keep.opt(&o.base_url, "base_url")?;
        p.api_key = keep.opt(&o.api_key, "api_key")?;
        p.api_key_env = keep.opt(&o.api_key_env, "api_key_env")?;
        p.version = keep.opt(&o.version, "version")?;
        (p.headers, p.n_headers) = keep.array(&o.headers, "header")?;
        p.allow_private_network = o.allow_private_network;
        macro_rules! copy { ($($f:ident),*) => { $( if let Some(v) = o.$f { p.$f = v; } )* } }
        copy!(connect_timeout_ms, request_timeout_ms, idle_timeout_ms);
        let mut raw = ptr::null_mut();
        let mut err = new_error();
        // SAFETY: the strings outlive the call, which copies them.
        check(unsafe { sys::sipp_client_add_provider(self.raw, cid.as_ptr(), &p, &mut raw, &mut err) }, &err)?;
        Ok(raw)
    }

    /// Registers a Sipp gateway endpoint under a new `id`. Nothing is sent until the first
    /// request.
    pub fn add_gateway(&self, id: &str, options: &GatewayOptions) -> Result<Endpoint<'_>> {
        self.reserve(id)?;
        let r = self.add_gateway_raw(id, options);
        if r.is_err() {
            self.unreserve(id);
        }
        r.map(|raw| Endpoint { client: self, raw, id: id.to_string() })
    }

    /// Registers a gateway under `id`, replacing an endpoint of that id.
    pub fn replace_gateway(&mut self, id: &str, options: &GatewayOptions) -> Result<Endpoint<'_>> {
        let raw = self.add_gateway_raw(id, options)?;
        self.ids.lock().unwrap_or_else(|e| e.into_inner()).insert(id.to_string());
        Ok(Endpoint { client: self, raw, id: id.to_string() })
    }

    fn add_gateway_raw(&self, id: &str, o: &GatewayOptions) -> Result<*mut sys::sipp_endpoint> {
        let cid = cstring(id, "id")?;
        let mut keep = Keep::default();
        let mut p = init(sys::sipp_gateway_params_init, "sipp_gateway_params")?;
        p.struct_size = mem::size_of::<sys::sipp_gateway_params>() as u32;
        p.base_url = keep.str(&o.base_url, "base_url")?;
        p.target = keep.str(&o.target, "target")?;
        (p.auth, p.auth_header) = match &o.auth {
            GatewayAuth::None => (sys::SIPP_GATEWAY_AUTH_NONE, ptr::null()),
            GatewayAuth::Bearer => (sys::SIPP_GATEWAY_AUTH_BEARER, ptr::null()),
            GatewayAuth::Header(name) => (sys::SIPP_GATEWAY_AUTH_HEADER, keep.str(name, "auth_header")?),
        };
        p.token = keep.opt(&o.token, "token")?;
        p.token_env = keep.opt(&o.token_env, "token_env")?;
        (p.headers, p.n_headers) = keep.array(&o.headers, "header")?;
        p.allow_private_network = o.allow_private_network;
        macro_rules! copy { ($($f:ident),*) => { $( if let Some(v) = o.$f { p.$f = v; } )* } }
        copy!(connect_timeout_ms, request_timeout_ms, idle_timeout_ms);
        let mut raw = ptr::null_mut();
        let mut err = new_error();
        // SAFETY: the strings outlive the call, which copies them.
        check(unsafe { sys::sipp_client_add_gateway(self.raw, cid.as_ptr(), &p, &mut raw, &mut err) }, &err)?;
        Ok(raw)
    }

    /// The endpoint registered under `id`, if any.
    pub fn endpoint(&self, id: &str) -> Option<Endpoint<'_>> {
        let cid = CString::new(id).ok()?;
        // SAFETY: any thread; the endpoint stays valid while &self is borrowed, since only
        // &mut self methods (and Drop) remove or replace endpoints.
        let raw = unsafe { sys::sipp_client_get_endpoint(self.raw, cid.as_ptr()) };
        if raw.is_null() {
            None
        } else {
            Some(Endpoint { client: self, raw, id: id.to_string() })
        }
    }

    /// Removes an endpoint: cancels its runs and unloads its model.
    pub fn remove(&mut self, id: &str) -> Result<()> {
        let cid = cstring(id, "id")?;
        let mut err = new_error();
        // SAFETY: &mut self: no Endpoint borrows the client.
        check(unsafe { sys::sipp_client_remove(self.raw, cid.as_ptr(), &mut err) }, &err)?;
        self.unreserve(id);
        Ok(())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // SAFETY: no borrow of the client (endpoints) is left, so no call is in flight.
        unsafe { sys::sipp_client_free(self.raw) }
    }
}

// ---- endpoints ----------------------------------------------------------------------------------

/// A registered endpoint, borrowed from its client.
pub struct Endpoint<'c> {
    client: &'c Client,
    raw: *mut sys::sipp_endpoint,
    id: String,
}

// SAFETY: sipp.h: requests, info and stats may be called from any thread.
unsafe impl Send for Endpoint<'_> {}
unsafe impl Sync for Endpoint<'_> {}

/// What an endpoint can do (`sipp_endpoint_info`).
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub struct EndpointInfo {
    pub can_generate: bool,
    pub can_chat: bool,
    pub can_embed: bool,
    pub n_ctx: u32,
    pub n_ctx_train: u32,
    pub n_embd: u32,
    pub n_parallel: u32,
    pub n_params: u64,
    pub size_bytes: u64,
    pub architecture: String,
    pub description: String,
    /// images in query/chat (a vision projector is loaded)
    pub vision: bool,
    /// audio in query/chat (an audio encoder is loaded)
    pub audio_in: bool,
    /// speech out (not yet: always false for local endpoints)
    pub audio_out: bool,
}

/// Engine counters of a local endpoint (`sipp_engine_stats`).
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub struct EngineStats {
    pub running: u32,
    pub queued: u32,
    pub completed: u64,
    pub cancelled: u64,
    pub failed: u64,
    pub rejected_busy: u64,
    pub prompt_tokens: u64,
    pub generated_tokens: u64,
    pub ticks: u64,
    pub batch_tokens: u64,
    pub batch_fill: f64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_evictions: u64,
    pub cache_ram_bytes: u64,
    pub cache_disk_bytes: u64,
    pub stalls: u64,
    pub stalled: bool,
    /// media chunks encoded (images, audio clips) and the time spent on them
    pub media_encoded: u64,
    pub media_encode_ms: f64,
}

impl<'c> Endpoint<'c> {
    /// The id it was registered under.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The client it belongs to.
    pub fn client(&self) -> &'c Client {
        self.client
    }

    /// Starts a raw completion. Option errors come back here (no run exists then).
    pub fn query(&self, prompt: &str, options: &TextOptions) -> Result<Run> {
        let prompt = cstring(prompt, "prompt")?;
        let p = options.to_c(0)?;
        self.submit(|out, err| unsafe { sys::sipp_query(self.raw, prompt.as_ptr(), &p.params, out, err) })
    }

    /// Starts a chat, rendered with the model's chat template.
    pub fn chat(&self, messages: &[Message], options: &TextOptions) -> Result<Run> {
        let p = options.to_c(last_user(messages))?;
        if messages.iter().any(|m| !m.tool_calls.is_empty() || m.tool_call_id.is_some()) {
            let mut keep = Keep::default();
            let cmsgs = c_chat_messages(messages, &mut keep)?;
            return self.submit(|out, err| unsafe {
                sys::sipp_chat_ex(self.raw, cmsgs.as_ptr(), cmsgs.len(), &p.params, out, err)
            });
        }
        let (cmsgs, _strings) = c_messages(messages)?;
        self.submit(|out, err| unsafe {
            sys::sipp_chat(self.raw, cmsgs.as_ptr(), cmsgs.len(), &p.params, out, err)
        })
    }

    /// Starts an embedding; [`Response::embedding`] holds the vector.
    pub fn embed(&self, text: &str, normalize: bool) -> Result<Run> {
        self.embed_with(text, &EmbedOptions::new().normalize(normalize))
    }

    /// Starts an embedding with options (remote endpoints: extra JSON, request id).
    pub fn embed_with(&self, text: &str, options: &EmbedOptions) -> Result<Run> {
        let text = cstring(text, "text")?;
        let mut keep = Keep::default();
        let mut p = init(sys::sipp_embed_params_init, "sipp_embed_params")?;
        p.struct_size = mem::size_of::<sys::sipp_embed_params>() as u32;
        if let Some(n) = options.normalize {
            p.normalize = n;
        }
        p.extra_json = keep.opt(&options.extra_json, "extra_json")?;
        p.request_id = keep.opt(&options.request_id, "request_id")?;
        self.submit(|out, err| unsafe { sys::sipp_embed(self.raw, text.as_ptr(), &p, out, err) })
    }

    fn submit(&self, call: impl FnOnce(*mut *mut sys::sipp_run, *mut sys::sipp_error) -> i32) -> Result<Run> {
        let mut raw = ptr::null_mut();
        let mut err = new_error();
        check(call(&mut raw, &mut err), &err)?;
        Ok(Run { inner: Arc::new(RunInner { raw }), finished: false, outcome: None, error_taken: false })
    }

    /// Estimates a raw completion without running it (docs/routing.md): the options'
    /// context_key and cache_scope decide which cached prefix counts. A local endpoint keeps
    /// the tokens for the query of the same text that follows.
    pub fn estimate_query(&self, prompt: &str, options: &TextOptions) -> Result<Estimate> {
        let prompt = cstring(prompt, "prompt")?;
        let p = options.to_c(0)?;
        self.estimate_with(|out, err| unsafe {
            sys::sipp_estimate_query(self.raw, prompt.as_ptr(), &p.params, out, err)
        })
    }

    /// Estimates a chat without running it (the template rendered as a run would).
    pub fn estimate_chat(&self, messages: &[Message], options: &TextOptions) -> Result<Estimate> {
        let (cmsgs, _strings) = c_messages(messages)?;
        let p = options.to_c(last_user(messages))?;
        self.estimate_with(|out, err| unsafe {
            sys::sipp_estimate_chat(self.raw, cmsgs.as_ptr(), cmsgs.len(), &p.params, out, err)
        })
    }

    fn estimate_with(&self, call: impl FnOnce(*mut sys::sipp_estimate, *mut sys::sipp_error) -> i32)
                     -> Result<Estimate> {
        let mut out = init(sys::sipp_estimate_init, "sipp_estimate")?;
        let mut err = new_error();
        check(call(&mut out, &mut err), &err)?;
        Ok(Estimate::from_c(&out))
    }

    /// The prices its estimates report, per million tokens in the app's currency (None:
    /// unknown).
    pub fn set_prices(&self, input_per_mtok: Option<f64>, output_per_mtok: Option<f64>) -> Result<()> {
        let mut err = new_error();
        // SAFETY: no pointers kept; any thread.
        check(unsafe { sys::sipp_endpoint_set_prices(self.raw, input_per_mtok.unwrap_or(-1.0),
                                                      output_per_mtok.unwrap_or(-1.0), &mut err) },
              &err)
    }

    /// What the endpoint can do.
    pub fn info(&self) -> Result<EndpointInfo> {
        let mut out = init(sys::sipp_endpoint_info_init, "sipp_endpoint_info")?;
        let mut err = new_error();
        // SAFETY: the library writes no more than out's struct_size.
        check(unsafe { sys::sipp_endpoint_get_info(self.raw, &mut out, &mut err) }, &err)?;
        let i = &out;
        Ok(EndpointInfo { can_generate: i.can_generate, can_chat: i.can_chat, can_embed: i.can_embed,
                          n_ctx: i.n_ctx, n_ctx_train: i.n_ctx_train, n_embd: i.n_embd,
                          n_parallel: i.n_parallel, n_params: i.n_params, size_bytes: i.size_bytes,
                          architecture: c_chars(&i.architecture),
                          description: c_chars(&i.description), vision: i.vision,
                          audio_in: i.audio_in, audio_out: i.audio_out })
    }

    /// Engine counters (local endpoints; others answer `unsupported`).
    pub fn stats(&self) -> Result<EngineStats> {
        let mut out = init(sys::sipp_engine_stats_init, "sipp_engine_stats")?;
        let mut err = new_error();
        // SAFETY: as in info().
        check(unsafe { sys::sipp_endpoint_get_stats(self.raw, &mut out, &mut err) }, &err)?;
        let s = &out;
        Ok(EngineStats { running: s.running, queued: s.queued, completed: s.completed,
                         cancelled: s.cancelled, failed: s.failed, rejected_busy: s.rejected_busy,
                         prompt_tokens: s.prompt_tokens, generated_tokens: s.generated_tokens,
                         ticks: s.ticks, batch_tokens: s.batch_tokens, batch_fill: s.batch_fill,
                         cache_hits: s.cache_hits, cache_misses: s.cache_misses,
                         cache_evictions: s.cache_evictions, cache_ram_bytes: s.cache_ram_bytes,
                         cache_disk_bytes: s.cache_disk_bytes, stalls: s.stalls,
                         stalled: s.stalled != 0, media_encoded: s.media_encoded,
                         media_encode_ms: s.media_encode_ms })
    }
}

impl fmt::Debug for Endpoint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint").field("id", &self.id).finish()
    }
}

// ---- runs ---------------------------------------------------------------------------------------

struct RunInner {
    raw: *mut sys::sipp_run,
}

// SAFETY: cancel and done are any-thread; the consumer calls go through &mut Run only, and the
// free happens when the last Arc drops, when no consumer call can be in flight.
unsafe impl Send for RunInner {}
unsafe impl Sync for RunInner {}

impl Drop for RunInner {
    fn drop(&mut self) {
        // SAFETY: the last owner; cancels a run still going, waits for its end, frees.
        unsafe { sys::sipp_run_free(self.raw) }
    }
}

/// A batch of generated text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBatch {
    /// complete UTF-8 text
    pub text: String,
    /// tokens it covers
    pub n_tokens: u32,
}

/// Token counts of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Usage {
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub total_tokens: u32,
}

/// Timings in ms and rates in tokens/s (`sipp_stats`).
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub struct Stats {
    pub queue_ms: f64,
    pub ttft_ms: f64,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
    pub total_ms: f64,
    pub itl_avg_ms: f64,
    pub itl_p99_ms: f64,
    pub prefill_tokens: u32,
    /// "none", "live" or "snapshot"
    pub cache_source: &'static str,
    pub cached_tokens: u32,
    /// media encoding (the projector) within prefill_ms
    pub encode_ms: f64,
    /// media parts encoded for this request (not reused from the cache)
    pub media_chunks: u32,
}

/// The end of a successful run (a failed one is an [`Error`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    /// generated text (query/chat)
    pub text: String,
    /// "stop", "length" or "cancelled"
    pub finish_reason: &'static str,
    /// token counts
    pub usage: Usage,
    /// timings
    pub stats: Stats,
    /// embed only
    pub embedding: Option<Vec<f32>>,
    /// whether the embedding is L2-normalised
    pub normalized: bool,
    /// remote endpoints: the HTTP status (0 for local)
    pub http_status: u32,
    /// remote endpoints: the peer's request id (may be "")
    pub request_id: String,
    /// remote endpoints: the peer's error code when it sent one, else ""
    pub error_code: String,
    /// with `TextOptions::logprobs`: one entry per output token (`sipp_token_logprob`)
    pub logprobs: Vec<TokenLogprob>,
    /// the calls the answer ends with (finish reason "tool_calls")
    pub tool_calls: Vec<ToolCall>,
    /// a thinking model's reasoning ([`ReasoningMode::Separate`]), else ""
    pub reasoning: String,
}

impl Response {
    /// The answer as an assistant message (with its calls), to send back with the results.
    pub fn message(&self) -> Message {
        Message { tool_calls: self.tool_calls.clone(), ..Message::assistant(self.text.clone()) }
    }
}

fn c_string(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: a NUL-terminated string owned by the run.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// One output token: its bytes (which may be part of a UTF-8 sequence), its log-probability and
/// the most likely alternatives, most likely first, as (bytes, log-probability).
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    /// the token's bytes
    pub token: Vec<u8>,
    /// natural log of its probability, <= 0
    pub logprob: f32,
    /// the alternatives (bytes, log-probability), most likely first
    pub top: Vec<(Vec<u8>, f32)>,
}

fn bytes_of(p: *const c_char, len: usize) -> Vec<u8> {
    if len == 0 {
        return Vec::new();
    }
    // SAFETY: len bytes owned by the run.
    unsafe { std::slice::from_raw_parts(p as *const u8, len) }.to_vec()
}

fn logprobs_of(p: *const sys::sipp_token_logprob, n: usize) -> Vec<TokenLogprob> {
    if p.is_null() {
        return Vec::new();
    }
    // SAFETY: n entries owned by the run, each with n_top alternatives.
    unsafe { std::slice::from_raw_parts(p, n) }
        .iter()
        .map(|e| TokenLogprob {
            token: bytes_of(e.token, e.token_len),
            logprob: e.logprob,
            top: if e.top.is_null() {
                Vec::new()
            } else {
                unsafe { std::slice::from_raw_parts(e.top, e.n_top as usize) }
                    .iter()
                    .map(|t| (bytes_of(t.token, t.token_len), t.logprob))
                    .collect()
            },
        })
        .collect()
}

fn static_name(p: *const c_char) -> &'static str {
    // SAFETY: the *_name functions return static strings.
    unsafe { CStr::from_ptr(p) }.to_str().unwrap_or("none")
}

/// One request. Iterate it (`for b in &mut run`) for token batches, then [`Run::wait`].
/// Dropping it cancels it if still going and frees it.
pub struct Run {
    inner: Arc<RunInner>,
    finished: bool,
    outcome: Option<Result<Response>>,
    error_taken: bool,
}

/// Cancels a run from any thread; valid as long as it lives, even after the [`Run`] dropped.
#[derive(Clone)]
pub struct Canceller {
    inner: Arc<RunInner>,
}

impl Canceller {
    /// Asks the run to stop; it ends with finish reason "cancelled" and the text so far.
    pub fn cancel(&self) {
        // SAFETY: any thread; the run lives while this Arc does.
        unsafe { sys::sipp_run_cancel(self.inner.raw) }
    }
}

impl fmt::Debug for Canceller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Canceller")
    }
}

impl Run {
    /// Asks the run to stop (see [`Canceller::cancel`]).
    pub fn cancel(&self) {
        // SAFETY: any thread.
        unsafe { sys::sipp_run_cancel(self.inner.raw) }
    }

    /// A handle that cancels this run from another thread.
    pub fn canceller(&self) -> Canceller {
        Canceller { inner: Arc::clone(&self.inner) }
    }

    /// True once the run has ended (text may still be unread).
    pub fn is_done(&self) -> bool {
        // SAFETY: any thread.
        self.finished || unsafe { sys::sipp_run_is_done(self.inner.raw) }
    }

    /// Waits up to `timeout` (None: forever) for the next batch. `Ok(None)` on timeout; at the
    /// end, `Ok(Some(batch))` with empty text and later calls return the same.
    fn pull(&mut self, timeout: Option<Duration>) -> Result<Option<(TokenBatch, bool)>> {
        if self.finished {
            return Ok(Some((TokenBatch { text: String::new(), n_tokens: 0 }, true)));
        }
        let ms = timeout.map_or(-1, |d| d.as_millis().min(i32::MAX as u128) as i32);
        let mut out = init(sys::sipp_token_batch_init, "sipp_token_batch")?;
        let mut err = new_error();
        // SAFETY: &mut self: the one consumer.
        let st = unsafe { sys::sipp_run_next(self.inner.raw, ms, &mut out, &mut err) };
        if st == sys::SIPP_TIMEOUT {
            return Ok(None);
        }
        check(st, &err)?;
        let b = &out;
        let text = if b.len == 0 {
            String::new()
        } else {
            // SAFETY: text/len valid until the next consumer call on the run.
            let bytes = unsafe { std::slice::from_raw_parts(b.text as *const u8, b.len) };
            String::from_utf8_lossy(bytes).into_owned()
        };
        let done = b.done;
        let batch = TokenBatch { text, n_tokens: b.n_tokens };
        if done {
            self.finish()?;
        }
        Ok(Some((batch, done)))
    }

    /// Copies the response of an ended run.
    fn finish(&mut self) -> Result<()> {
        self.finished = true;
        if self.outcome.is_some() {
            return Ok(());
        }
        let mut resp: *const sys::sipp_response = ptr::null();
        let mut err = new_error();
        // SAFETY: the run ended; wait returns at once with a pointer valid until free.
        check(unsafe { sys::sipp_run_wait(self.inner.raw, &mut resp, &mut err) }, &err)?;
        let r = unsafe { &*resp };
        let request_id = c_chars(&r.request_id);
        let error_code = c_chars(&r.error_code);
        self.outcome = Some(if r.status != sys::SIPP_OK {
            Err(Error { kind: status_name(r.status), status: r.status,
                        message: c_chars(&r.error_message), code: error_code,
                        http_status: r.http_status, subcode: 0, retry_after_s: r.retry_after_s,
                        request_id })
        } else {
            let text = if r.text_len == 0 {
                String::new()
            } else {
                // SAFETY: text_len bytes owned by the run.
                let bytes = unsafe { std::slice::from_raw_parts(r.text as *const u8, r.text_len) };
                String::from_utf8_lossy(bytes).into_owned()
            };
            let embedding = if r.embedding.is_null() {
                None
            } else {
                // SAFETY: n_embd floats owned by the run.
                Some(unsafe { std::slice::from_raw_parts(r.embedding, r.n_embd as usize) }.to_vec())
            };
            // SAFETY: never NULL, owned by the run like the response.
            let (s, u) = unsafe { (&*r.stats, &*r.usage) };
            Ok(Response {
                text,
                finish_reason: static_name(unsafe { sys::sipp_finish_reason_name(r.finish_reason) }),
                usage: Usage { input_tokens: u.input_tokens, output_tokens: u.output_tokens,
                               total_tokens: u.total_tokens },
                stats: Stats { queue_ms: s.queue_ms, ttft_ms: s.ttft_ms, prefill_ms: s.prefill_ms,
                               decode_ms: s.decode_ms, prefill_tok_s: s.prefill_tok_s,
                               decode_tok_s: s.decode_tok_s, total_ms: s.total_ms,
                               itl_avg_ms: s.itl_avg_ms, itl_p99_ms: s.itl_p99_ms,
                               prefill_tokens: s.prefill_tokens,
                               cache_source: static_name(unsafe { sys::sipp_cache_source_name(s.cache_source) }),
                               cached_tokens: s.cached_tokens, encode_ms: s.encode_ms,
                               media_chunks: s.media_chunks },
                embedding,
                normalized: r.normalized,
                http_status: r.http_status,
                request_id,
                error_code,
                logprobs: logprobs_of(r.logprobs, r.n_logprobs),
                tool_calls: if r.tool_calls.is_null() { Vec::new() } else {
                    // SAFETY: n_tool_calls entries owned by the run.
                    unsafe { std::slice::from_raw_parts(r.tool_calls, r.n_tool_calls) }
                        .iter()
                        .map(|c| ToolCall { id: c_string(c.id), name: c_string(c.name),
                                            arguments: c_string(c.arguments) })
                        .collect()
                },
                reasoning: String::from_utf8_lossy(&bytes_of(r.reasoning, r.reasoning_len)).into_owned(),
            })
        });
        Ok(())
    }

    /// The next batch within `timeout`: `Ok(None)` if nothing came (the run goes on) or the
    /// run ended; see [`Run::is_done`].
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<TokenBatch>> {
        match self.pull(Some(timeout))? {
            Some((b, _)) if !b.text.is_empty() => Ok(Some(b)),
            _ => Ok(None),
        }
    }

    /// The next piece of the stream as a delta (content, reasoning or a tool call's piece, in
    /// order), instead of text batches: a run is read one way or the other. `Ok(None)` at the
    /// end (then [`Run::wait`] gives the response or the run's error).
    pub fn next_delta(&mut self) -> Result<Option<Delta>> {
        loop {
            if self.finished {
                return Ok(None);
            }
            let mut out: sys::sipp_delta = unsafe { mem::zeroed() };
            out.struct_size = mem::size_of::<sys::sipp_delta>() as u32;
            let mut done = false;
            let mut err = new_error();
            // SAFETY: &mut self: the one consumer; strings valid until the next call.
            let st = unsafe { sys::sipp_run_next_delta(self.inner.raw, -1, &mut out, &mut done, &mut err) };
            if st == sys::SIPP_TIMEOUT {
                continue;
            }
            check(st, &err)?;
            if done {
                self.finish()?;
                return Ok(None);
            }
            let opt = |p: *const c_char| if p.is_null() { None } else { Some(c_string(p)) };
            return Ok(Some(Delta {
                kind: match out.kind { 1 => DeltaKind::Reasoning, 2 => DeltaKind::ToolCall,
                                       _ => DeltaKind::Content },
                text: String::from_utf8_lossy(&bytes_of(out.text, out.len)).into_owned(),
                tool_index: out.tool_index,
                tool_id: opt(out.tool_id),
                tool_name: opt(out.tool_name),
            }));
        }
    }

    /// Waits for the end (reading the rest of the stream) and returns the response, or the
    /// run's error. May be called again: same answer.
    pub fn wait(&mut self) -> Result<Response> {
        while !self.finished {
            self.pull(None)?;
        }
        self.error_taken = true;
        self.outcome.clone().expect("an ended run has an outcome")
    }
}

impl Iterator for Run {
    type Item = Result<TokenBatch>;

    /// The next batch of text; `Some(Err(..))` once if the run failed; then `None`.
    fn next(&mut self) -> Option<Result<TokenBatch>> {
        loop {
            if self.finished {
                if !self.error_taken {
                    self.error_taken = true;
                    if let Some(Err(e)) = &self.outcome {
                        return Some(Err(e.clone()));
                    }
                }
                return None;
            }
            match self.pull(None) {
                Err(e) => {
                    self.finished = true;
                    self.error_taken = true;
                    return Some(Err(e));
                }
                Ok(Some((b, _))) if !b.text.is_empty() => return Some(Ok(b)),
                Ok(_) => continue,
            }
        }
    }
}

impl fmt::Debug for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run").field("finished", &self.finished).finish()
    }
}

// ---- routing: estimates and the policy (docs/routing.md) ---------------------------------------

/// Where a figure of an estimate comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FigureSource {
    /// Not known: the value is 0, do not use it.
    #[default]
    Unknown,
    /// From this client's own requests on the endpoint (over `samples` of them).
    Measured,
    /// Set by the app ([`Endpoint::set_prices`]).
    Configured,
    /// Computed from measured rates and the current load.
    Predicted,
}

/// A figure and where it comes from.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Figure {
    /// The value (0 when unknown).
    pub value: f64,
    /// Requests it was measured over (0 when not measured).
    pub samples: u32,
    /// Where it comes from.
    pub source: FigureSource,
}

impl Figure {
    fn from_c(f: &sys::sipp_figure) -> Figure {
        let source = match f.source {
            1 => FigureSource::Measured,
            2 => FigureSource::Configured,
            3 => FigureSource::Predicted,
            _ => FigureSource::Unknown,
        };
        Figure { value: f.value, samples: f.samples, source }
    }

    fn to_c(self) -> sys::sipp_figure {
        let source = match self.source {
            FigureSource::Unknown => 0,
            FigureSource::Measured => 1,
            FigureSource::Configured => 2,
            FigureSource::Predicted => 3,
        };
        sys::sipp_figure { value: self.value, samples: self.samples, source }
    }

    /// False for [`FigureSource::Unknown`].
    pub fn is_known(&self) -> bool {
        self.source != FigureSource::Unknown
    }
}

/// What an endpoint expects of one prepared request, without running it (`sipp_estimate`).
/// An app may also build one itself (e.g. for a test of its rules).
#[derive(Clone, Debug, PartialEq, Default)]
#[allow(missing_docs)]
pub struct Estimate {
    pub local: bool,
    pub loaded: bool,
    pub healthy: bool,
    pub prompt_tokens: u32,
    pub cached_tokens: u32,
    /// "none", "live" or "snapshot"
    pub cache_source: &'static str,
    pub cache_on_disk: bool,
    pub prefill_tokens: u32,
    pub n_ctx: u32,
    pub running: u32,
    pub queued: u32,
    pub free_slots: u32,
    pub ttft_ms: Figure,
    pub decode_tokens_per_s: Figure,
    pub total_ms: Figure,
    pub price_input_per_mtok: Figure,
    pub price_output_per_mtok: Figure,
    pub error_rate: Figure,
    pub busy_rate: Figure,
}

impl Estimate {
    fn from_c(e: &sys::sipp_estimate) -> Estimate {
        Estimate {
            local: e.local, loaded: e.loaded, healthy: e.healthy, prompt_tokens: e.prompt_tokens,
            cached_tokens: e.cached_tokens,
            // SAFETY: a static string for any value
            cache_source: static_name(unsafe { sys::sipp_cache_source_name(e.cache_source) }),
            cache_on_disk: e.cache_on_disk, prefill_tokens: e.prefill_tokens, n_ctx: e.n_ctx,
            running: e.running, queued: e.queued, free_slots: e.free_slots,
            ttft_ms: Figure::from_c(&e.ttft_ms),
            decode_tokens_per_s: Figure::from_c(&e.decode_tokens_per_s),
            total_ms: Figure::from_c(&e.total_ms),
            price_input_per_mtok: Figure::from_c(&e.price_input_per_mtok),
            price_output_per_mtok: Figure::from_c(&e.price_output_per_mtok),
            error_rate: Figure::from_c(&e.error_rate), busy_rate: Figure::from_c(&e.busy_rate),
        }
    }

    fn to_c(&self) -> sys::sipp_estimate {
        let cache_source = match self.cache_source {
            "live" => 1,
            "snapshot" => 2,
            _ => 0,
        };
        sys::sipp_estimate {
            struct_size: mem::size_of::<sys::sipp_estimate>() as u32, local: self.local,
            loaded: self.loaded, healthy: self.healthy, prompt_tokens: self.prompt_tokens,
            cached_tokens: self.cached_tokens, cache_source, cache_on_disk: self.cache_on_disk,
            prefill_tokens: self.prefill_tokens, n_ctx: self.n_ctx, running: self.running,
            queued: self.queued, free_slots: self.free_slots, ttft_ms: self.ttft_ms.to_c(),
            decode_tokens_per_s: self.decode_tokens_per_s.to_c(), total_ms: self.total_ms.to_c(),
            price_input_per_mtok: self.price_input_per_mtok.to_c(),
            price_output_per_mtok: self.price_output_per_mtok.to_c(),
            error_rate: self.error_rate.to_c(), busy_rate: self.busy_rate.to_c(),
        }
    }
}

/// One rule of a [`Policy`] (`sipp_rule`; docs/routing.md). Filters drop candidates; preferences
/// pick one of those left, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Rule {
    /// Filter: a request carrying the tag may only go to local endpoints.
    LocalOnlyTag(String),
    /// Filter: drop unhealthy remotes, and locals with no free sequence and this many queued.
    SkipUnavailable(u32),
    /// Filter: drop locals whose context cannot hold the prompt plus max_tokens.
    FitContext,
    /// Filter: drop endpoints whose TTFT figure is above this (ms; unknown passes).
    MaxTtftMs(f64),
    /// Filter: drop endpoints whose expected cost is above this.
    MaxCost(f64),
    /// Preference: the local endpoint with at least this fraction of the prompt cached.
    PreferWarm(f64),
    /// Preference: the first local endpoint whose TTFT figure is below this (ms).
    PreferLocalUnderTtft(f64),
    /// Preference: the lowest expected cost.
    PreferCheapest,
    /// After a run: escalate a draft whose confidence is below this probability.
    EscalateLowConfidence(f64),
}

/// The answer of [`Policy::choose`].
#[derive(Clone, Debug, PartialEq)]
pub struct RouteChoice {
    /// Index of the chosen candidate; None when every candidate was dropped.
    pub index: Option<usize>,
    /// The candidates a filter dropped.
    pub dropped: Vec<usize>,
    /// One line per rule that acted, with the figures it used and their sources.
    pub reasons: String,
}

/// An ordered, explainable set of routing rules (`sipp_policy`). Immutable; [`Policy::choose`]
/// is pure (it sends nothing) and may run on any thread.
pub struct Policy {
    raw: *mut sys::sipp_policy,
}

// SAFETY: sipp.h: a policy is immutable and may be used from any number of threads.
unsafe impl Send for Policy {}
unsafe impl Sync for Policy {}

impl Policy {
    /// Builds a policy; an error names a rule that makes no sense (a negative budget, a
    /// fraction outside [0, 1], an empty tag).
    pub fn new(rules: &[Rule]) -> Result<Policy> {
        let mut keep = Keep::default();
        let mut c = Vec::with_capacity(rules.len());
        for r in rules {
            let (kind, value, tag) = match r {
                Rule::LocalOnlyTag(t) => (1, 0.0, keep.str(t, "tag")?),
                Rule::SkipUnavailable(q) => (2, *q as f64, ptr::null()),
                Rule::FitContext => (3, 0.0, ptr::null()),
                Rule::MaxTtftMs(v) => (4, *v, ptr::null()),
                Rule::MaxCost(v) => (5, *v, ptr::null()),
                Rule::PreferWarm(v) => (6, *v, ptr::null()),
                Rule::PreferLocalUnderTtft(v) => (7, *v, ptr::null()),
                Rule::PreferCheapest => (8, 0.0, ptr::null()),
                Rule::EscalateLowConfidence(v) => (9, *v, ptr::null()),
            };
            c.push(sys::sipp_rule { kind, value, tag });
        }
        let mut raw = ptr::null_mut();
        let mut err = new_error();
        // SAFETY: the rules and their tags live until the call returns; the library copies them.
        check(unsafe { sys::sipp_policy_new(c.as_ptr(), c.len(), &mut raw, &mut err) }, &err)?;
        Ok(Policy { raw })
    }

    /// Chooses among `candidates` (an endpoint and its estimate each) for a request with `tags`
    /// that may generate up to `max_tokens`. A request every candidate refuses is not an error:
    /// the choice has no index and its reasons say why each one went.
    pub fn choose(&self, candidates: &[(&Endpoint<'_>, &Estimate)], tags: &[&str], max_tokens: u32)
                  -> Result<RouteChoice> {
        if candidates.is_empty() || candidates.len() > 64 {
            return Err(Error::invalid("1 to 64 candidates are required"));
        }
        let mut keep = Keep::default();
        let ests: Vec<sys::sipp_estimate> = candidates.iter().map(|(_, e)| e.to_c()).collect();
        let mut c = Vec::with_capacity(candidates.len());
        for (i, (ep, _)) in candidates.iter().enumerate() {
            c.push(sys::sipp_route_candidate { endpoint: ep.raw, estimate: &ests[i],
                                               name: keep.str(&ep.id, "name")? });
        }
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        let (tp, nt) = keep.array(&tags, "tag")?;
        let mut out = sys::sipp_route_choice { index: -1, endpoint: ptr::null_mut(),
                                               reasons: ptr::null_mut(), dropped: 0 };
        let mut err = new_error();
        // SAFETY: every pointer lives until the call returns; the choice is freed below.
        let st = unsafe { sys::sipp_policy_choose(self.raw, c.as_ptr(), c.len(), tp, nt, max_tokens,
                                                  &mut out, &mut err) };
        let reasons = if out.reasons.is_null() {
            String::new()
        } else {
            // SAFETY: a NUL-terminated string owned by the choice
            unsafe { CStr::from_ptr(out.reasons) }.to_string_lossy().into_owned()
        };
        let choice = RouteChoice {
            index: usize::try_from(out.index).ok(),
            dropped: (0..candidates.len()).filter(|i| out.dropped >> i & 1 == 1).collect(),
            reasons,
        };
        // SAFETY: frees what the library allocated in `out`
        unsafe { sys::sipp_route_choice_free(&mut out) };
        if st != sys::SIPP_NO_ROUTE {
            check(st, &err)?;
        }
        Ok(choice)
    }
}

/// What a draft check or a draft-then-audit decided (`sipp_audit_outcome`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditOutcome {
    /// The draft stands: confident enough, or the policy has no confidence rule.
    Draft,
    /// The draft was unsure (or had no log-probabilities): the request went to the target.
    Escalated,
    /// The draft failed; it is never sent elsewhere ([`AuditDecision::retry_safe`]: the app may).
    DraftFailed,
}

/// The decision of [`Policy::check_draft`] / [`Policy::draft_audit`] (`sipp_audit_decision`).
#[derive(Clone, Debug, PartialEq)]
pub struct AuditDecision {
    /// what was decided
    pub outcome: AuditOutcome,
    /// the draft's geometric mean token probability; NaN when unknown
    pub confidence: f64,
    /// its least likely token's probability; NaN when unknown
    pub min_prob: f64,
    /// the tokens the confidence was computed over
    pub n_tokens: u32,
    /// DraftFailed: nothing of the draft was produced, the app may send it elsewhere
    pub retry_safe: bool,
    /// one line per rule or check that acted, with its figures
    pub reasons: String,
}

fn new_decision() -> sys::sipp_audit_decision {
    sys::sipp_audit_decision { outcome: 0, confidence: f64::NAN, min_prob: f64::NAN, n_tokens: 0,
                               retry_safe: false, reasons: ptr::null_mut() }
}

/// The decision in `d` (freed here), or the error of `st`.
fn take_decision(st: sys::sipp_status, d: &mut sys::sipp_audit_decision, err: &sys::sipp_error)
                 -> Result<AuditDecision> {
    let reasons = c_string(d.reasons);
    let out = AuditDecision {
        outcome: match d.outcome { 2 => AuditOutcome::Escalated, 3 => AuditOutcome::DraftFailed,
                                   _ => AuditOutcome::Draft },
        confidence: d.confidence, min_prob: d.min_prob, n_tokens: d.n_tokens,
        retry_safe: d.retry_safe, reasons,
    };
    // SAFETY: frees what the library allocated in `d`
    unsafe { sys::sipp_audit_decision_free(d) };
    check(st, err)?;
    Ok(out)
}

impl Policy {
    /// Decides whether a finished draft stands (`sipp_policy_check_draft`), by the first
    /// [`Rule::EscalateLowConfidence`] (none: the draft always stands): Escalated for a draft
    /// without log-probabilities or below the threshold, else Draft. Pure: nothing is sent.
    pub fn check_draft(&self, draft: &Response) -> Result<AuditDecision> {
        let lps: Vec<sys::sipp_token_logprob> = draft.logprobs.iter().map(|t| sys::sipp_token_logprob {
            token: ptr::null(), token_len: 0, logprob: t.logprob, top: ptr::null(), n_top: 0,
        }).collect();
        let usage = sys::sipp_usage { struct_size: mem::size_of::<sys::sipp_usage>() as u32,
                                      input_tokens: draft.usage.input_tokens,
                                      output_tokens: draft.usage.output_tokens,
                                      total_tokens: draft.usage.total_tokens };
        // SAFETY: a plain C struct: all zero is a valid value (null pointers, zero counts)
        let mut r: sys::sipp_response = unsafe { mem::zeroed() };
        r.struct_size = mem::size_of::<sys::sipp_response>() as u32;
        r.status = sys::SIPP_OK;
        let text = CString::new(draft.text.replace('\0', "")).unwrap_or_default(); // NUL-terminated
        r.text = text.as_ptr();
        r.text_len = text.as_bytes().len();
        r.usage = &usage;
        if !lps.is_empty() {
            r.logprobs = lps.as_ptr();
            r.n_logprobs = lps.len();
        }
        let mut d = new_decision();
        let mut err = new_error();
        // SAFETY: r and what it points at live until the call returns
        let st = unsafe { sys::sipp_policy_check_draft(self.raw, &r, &mut d, &mut err) };
        take_decision(st, &mut d, &err)
    }

    /// [`Policy::check_draft`] on a run: waits for its end (reading the rest of its stream) and
    /// checks its response as it is, a failed run included (DraftFailed, with retry_safe).
    pub fn check_draft_run(&self, draft: &mut Run) -> Result<AuditDecision> {
        let _ = draft.wait(); // a failed run is what is checked, not an error here
        let mut resp: *const sys::sipp_response = ptr::null();
        let mut err = new_error();
        // SAFETY: the run ended; wait returns at once with a pointer valid until its free,
        // and &mut Run keeps it alive and unread by others during the check.
        check(unsafe { sys::sipp_run_wait(draft.inner.raw, &mut resp, &mut err) }, &err)?;
        let mut d = new_decision();
        let st = unsafe { sys::sipp_policy_check_draft(self.raw, resp, &mut d, &mut err) };
        take_decision(st, &mut d, &err)
    }

    /// Draft-then-audit (`sipp_route_draft_audit`): runs the chat on `draft` (a local model,
    /// usually) with log-probabilities and without streaming it to the caller, waits for it
    /// (blocking this thread) and checks it ([`Policy::check_draft`]), then returns the run and
    /// the decision:
    /// - Draft: the run is the finished draft;
    /// - Escalated: the run is the chat on `target`, started (read it as any run); with
    ///   `send_draft` a last user message carries the draft and asks the target to check and
    ///   correct it; a remote target gets no context_key/cache_scope;
    /// - DraftFailed: the run is the failed draft, never sent elsewhere (retry_safe: the app may).
    ///
    /// A draft refused at submission (busy, a bad option) is an `Err`: nothing was sent
    /// anywhere, so the app may send it elsewhere itself. No stream the caller saw is switched.
    pub fn draft_audit(&self, draft: &Endpoint<'_>, target: &Endpoint<'_>, messages: &[Message],
                       options: &TextOptions, send_draft: bool) -> Result<(Run, AuditDecision)> {
        let p = options.to_c(last_user(messages))?;
        let (cmsgs, _strings) = c_messages(messages)?;
        let mut raw = ptr::null_mut();
        let mut d = new_decision();
        let mut err = new_error();
        // SAFETY: the messages and params live until the call returns (the library copies
        // them); both endpoints are borrowed from live clients.
        let st = unsafe {
            sys::sipp_route_draft_audit(self.raw, draft.raw, target.raw, cmsgs.as_ptr(), cmsgs.len(),
                                        &p.params, send_draft, &mut raw, &mut d, &mut err)
        };
        let decision = take_decision(st, &mut d, &err)?;
        Ok((Run { inner: Arc::new(RunInner { raw }), finished: false, outcome: None,
                  error_taken: false }, decision))
    }
}

impl Drop for Policy {
    fn drop(&mut self) {
        // SAFETY: owned; no borrow of it outlives self
        unsafe { sys::sipp_policy_free(self.raw) };
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy").finish_non_exhaustive()
    }
}

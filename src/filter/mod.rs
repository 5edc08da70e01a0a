//! The proxy-wasm layer: registers the contexts and adapts Envoy's ABI to the core's
//! [`Host`](crate::core::exchange::Host) trait. No MCP logic lives here.

mod abi;
mod export;
mod http;
mod metrics;
mod root;

/// Routes the `log` crate to Envoy's log, at the level Envoy runs the `wasm` component
/// with (read at configure time), so a disabled level costs neither formatting nor a
/// host call. Envoy prefixes each line with the plugin name; the filter's own lines
/// carry `[req=…|session=…]`.
struct EnvoyLogger;

impl log::Log for EnvoyLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Trace => 0,
            log::Level::Debug => 1,
            log::Level::Info => 2,
            log::Level::Warn => 3,
            log::Level::Error => 4,
        };
        // Request lines carry their own `[req=…|session=…]`; VM-level lines (configure,
        // export) belong to no request and say so the same way.
        let line = record.args().to_string();
        if line.starts_with("[req=") {
            abi::log(level, &line);
        } else {
            abi::log(level, &format!("[req=-|session=-] {line}"));
        }
    }

    fn flush(&self) {}
}

static LOGGER: EnvoyLogger = EnvoyLogger;

// Talc instead of Rust's default wasm allocator (dlmalloc): every request allocates and
// frees a few dozen small blocks, and V8 runs Talc's allocation path faster (make bench).
// The VM is single-threaded (no `atomics`), which this allocator requires.
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

/// Applies the host's log level to the `log` crate's filter.
fn follow_host_log_level() {
    let filter = match abi::log_level() {
        Some(0) => log::LevelFilter::Trace,
        Some(1) => log::LevelFilter::Debug,
        Some(2) | None => log::LevelFilter::Info,
        Some(3) => log::LevelFilter::Warn,
        Some(4) => log::LevelFilter::Error,
        Some(_) => log::LevelFilter::Off,
    };
    log::set_max_level(filter);
}

proxy_wasm::main! {{
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
    proxy_wasm::set_root_context(|_| Box::new(root::Root::default()));
}}

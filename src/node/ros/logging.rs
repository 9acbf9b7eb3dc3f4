//! The `log` crate → ROS logging bridge (rcutils: console and log files), so that library code logging
//! with `log::warn!` shows up like any ROS node's messages. Level from `RUST_LOG` (default info).

struct RosLogger {
    name: String,
}

impl log::Log for RosLogger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let sev = match r.level() {
            log::Level::Error => r2r::LogSeverity::Error,
            log::Level::Warn => r2r::LogSeverity::Warn,
            log::Level::Info => r2r::LogSeverity::Info,
            log::Level::Debug | log::Level::Trace => r2r::LogSeverity::Debug,
        };
        // r2r builds C strings: strip NULs (messages may quote input data).
        let msg = format!("{}", r.args()).replace('\0', "?");
        let file = r.file().unwrap_or("").replace('\0', "?");
        r2r::log(&msg, &self.name, &file, r.line().unwrap_or(0), sev);
    }
    fn flush(&self) {}
}

/// Routes the `log` crate to ROS logging (rcutils: console + log files) under the logger `name`.
/// Level from `RUST_LOG` (error, warn, info, debug, trace; default info).
pub fn init_logging(name: &str) {
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<log::LevelFilter>().ok())
        .unwrap_or(log::LevelFilter::Info);
    if log::set_boxed_logger(Box::new(RosLogger {
        name: name.to_string(),
    }))
    .is_ok()
    {
        log::set_max_level(level);
    }
}

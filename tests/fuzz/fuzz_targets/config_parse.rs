//! The collector's configuration: TOML text (and `EMBER_*` variables) → validated config. Bad
//! input is a `ConfigError`, never a panic; a valid config printed as TOML reads back to the
//! same config.
#![no_main]

use ember_collector::config::RawConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(raw) = RawConfig::from_toml(text) {
        if let Ok(config) = raw.validate() {
            let printed = toml::to_string(&config.to_raw()).expect("a config prints");
            let again = RawConfig::from_toml(&printed)
                .and_then(|r| r.validate())
                .unwrap_or_else(|e| panic!("printed config refused: {e}\n{printed}"));
            assert_eq!(again.to_raw(), config.to_raw(), "{printed}");
        }
    }
    // The same text as environment variables, one `NAME=value` a line.
    let vars = text.lines().filter_map(|l| {
        l.split_once('=')
            .map(|(k, v)| (k.to_string(), v.to_string()))
    });
    if let Ok(raw) = RawConfig::from_env(vars) {
        let _ = raw.validate();
    }
});

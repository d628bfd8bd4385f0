//! `ocivol config`: the configuration in force (config file, flags and environment merged), as
//! TOML with where each value came from, or as JSON; and `--convert`, which turns the JSON
//! config of older releases into TOML.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Args;
use serde::Serialize;

use super::{Global, run};
use crate::config::{Config, Context, Source, render};

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  ocivol config\n  ocivol --root /srv/ocivol config --format json\n  ocivol config --convert /etc/ocivol/config.json > /etc/ocivol/config.toml"
)]
pub struct ConfigArgs {
    /// `toml`: the configuration as a config.toml, each key followed by a comment saying
    /// where its value came from (`flag --root`, `env OCIVOL_ROOT`, `FILE:LINE`, `default`);
    /// `json`: the same for scripts.
    #[arg(long, value_enum, default_value_t = ConfigFormat::Toml)]
    pub format: ConfigFormat,
    /// Print FILE, a config.json of older ocivol releases (JSON with `//` comment lines), as
    /// config.toml text, and do nothing else.
    #[arg(long, value_name = "FILE", conflicts_with = "format")]
    pub convert: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConfigFormat {
    Toml,
    Json,
}

#[derive(Serialize)]
struct Report<'a> {
    /// The config file read or looked for.
    file: &'a PathBuf,
    /// What chose that file: `flag --config`, `env OCIVOL_CONFIG` or `default`.
    file_source: &'a Source,
    /// Whether the file was there.
    file_read: bool,
    config: &'a Config,
    sources: &'a std::collections::BTreeMap<&'static str, Source>,
}

pub fn exec(g: &Global, args: ConfigArgs) -> i32 {
    run(|| {
        if let Some(file) = &args.convert {
            print!("{}", convert(file)?);
            return Ok(0);
        }
        let r = Context::resolve(g.config.clone(), g.root.clone(), g.run_root.clone())?;
        // The state roots in force, which flags and environment may have chosen.
        let mut config = r.context.config.clone();
        config.root = r.context.paths.root.clone();
        config.run_root = r.context.paths.run_root.clone();
        match args.format {
            ConfigFormat::Json => {
                let report = Report {
                    file: &r.file,
                    file_source: &r.file_source,
                    file_read: r.file_read,
                    config: &config,
                    sources: &r.sources,
                };
                println!("{}", serde_json::to_string_pretty(&report)?);
            }
            ConfigFormat::Toml => {
                let chosen = match &r.file_source {
                    Source::Default => "the default location".to_string(),
                    other => other.to_string(),
                };
                let mut header = vec![
                    "The configuration ocivol uses: config file, flags and environment merged."
                        .to_string(),
                    format!("config file: {} ({chosen})", r.file.display()),
                ];
                if !r.file_read {
                    header.push(
                        "It is absent: every value is its default unless a flag or the environment set it."
                            .to_string(),
                    );
                }
                let text = render::render(&config, &header, |key| {
                    r.sources.get(key).map(ToString::to_string)
                });
                print!("{text}");
            }
        }
        Ok(0)
    })
}

/// The TOML text of an old config.json.
fn convert(file: &PathBuf) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("config --convert {}: cannot read it", file.display()))?;
    let config = match Config::parse_legacy(&text) {
        Ok(c) => c,
        Err(e) if Config::parse(&text).is_ok() => {
            bail!(
                "config --convert {}: it is already a config.toml, nothing to convert ({e})",
                file.display()
            )
        }
        Err(e) => bail!(
            "config --convert {}: not an ocivol config.json: {e}",
            file.display()
        ),
    };
    let header = [
        format!(
            "ocivol config, converted by `ocivol config --convert` from {}",
            file.display()
        ),
        "(the JSON config of older releases). Every key is written out; the config.toml".into(),
        "that ocivol ships describes each one.".into(),
    ];
    Ok(render::render(&config, &header, |_| None))
}

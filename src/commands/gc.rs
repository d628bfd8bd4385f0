//! `ocivol gc`: gives back what crashed containers, killed shims and reboots left behind (see
//! [`crate::store::Store::gc`] for the rules).

use clap::Args;

use super::output::escape;
use super::{Global, run, store};

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  ocivol gc --dry-run   # what would be released\n  ocivol gc")]
pub struct GcArgs {
    /// Say what would be done, change nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
}

pub fn exec(g: &Global, args: GcArgs) -> i32 {
    run(|| {
        let ctx = g.context()?;
        if !ctx.paths.root.exists() && !ctx.paths.run_root.exists() {
            // Nothing ever used these roots: make none of them (a gc pointed at the wrong
            // place, say by a timer without the engines' config, leaves no trace).
            println!("nothing to collect");
            return Ok(0);
        }
        let actions = store(&ctx).gc(args.dry_run)?;
        if actions.is_empty() {
            println!("nothing to collect");
        }
        for a in &actions {
            println!("{}", escape(&a.line(args.dry_run)));
        }
        Ok(0)
    })
}

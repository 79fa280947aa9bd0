use clap::Parser;

use twinvm::cli::{Cli, Command};

fn main() {
    twinvm::logger::init();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() {
                twinvm::error::status::BAD_INPUT
            } else {
                0
            });
        }
    };
    let code = match &cli.command {
        Command::Run(a) => twinvm::run::cmd_run(a),
        Command::Bench(a) => twinvm::bench::cmd_bench(a),
        Command::FuzzDiff(a) => twinvm::fuzz_diff::cmd_fuzz_diff(a),
    };
    std::process::exit(code);
}

use clap::Parser;

use twinvm::cli::{Cli, Command};

fn main() {
    twinvm::logger::init();
    let argv: Vec<String> = std::env::args().collect();
    // Through a link named qemu-system-x86_64 (or `twinvm qemu …`), QEMU's options are
    // parsed by hand: they are single-dash and would confuse clap.
    let invoked_as = argv
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .and_then(|n| n.to_str());
    if invoked_as == Some(twinvm::qemu::QEMU_NAME) {
        std::process::exit(twinvm::qemu::main(&argv[1..]));
    }
    if argv.get(1).map(String::as_str) == Some("qemu") {
        std::process::exit(twinvm::qemu::main(&argv[2..]));
    }
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
        Command::Conform(a) => twinvm::conform::cmd_conform(a),
        Command::Compare(a) => twinvm::compare::cmd_compare(a),
        Command::Qemu { args } => twinvm::qemu::main(args),
        Command::FuzzDiff(a) => twinvm::fuzz_diff::cmd_fuzz_diff(a),
    };
    std::process::exit(code);
}

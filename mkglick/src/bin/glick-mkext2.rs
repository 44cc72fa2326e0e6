//! `glick-mkext2 IMAGE DIRECTORY`: build a minimal, deterministic ext2 image of a directory.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory as _, Parser};
use mkglick::{ImageArgs, make_image_file};

/// Build a minimal, deterministic ext2 image of a directory
#[derive(Debug, Parser)]
#[command(
    name = "glick-mkext2",
    version,
    after_help = "Arguments are in Glick 1's order: the image to write first, then the directory.\n\n\
                  Example:\n  glick-mkext2 app.ext2 ./app\n\nSOURCE_DATE_EPOCH, when set, clamps every timestamp in the image and is its creation time."
)]
struct Cli {
    /// The image file to write (replaced atomically)
    image: PathBuf,
    /// The directory to put in the image
    directory: PathBuf,
    #[command(flatten)]
    args: ImageArgs,
}

fn run(args: Vec<std::ffi::OsString>) -> anyhow::Result<()> {
    let cli = Cli::parse_from(args);
    let options = cli.args.options()?;
    make_image_file(&cli.directory, &cli.image, &options)
}

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().collect();
    if let Some(code) = glick_cli::handle(&args, Cli::command) {
        return code;
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("glick-mkext2: {e}");
            ExitCode::FAILURE
        }
    }
}

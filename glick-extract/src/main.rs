//! `glick-extract`: take a glick bundle apart without running or mounting it.
//!
//! Every mode reads the bundle's ELF section table first (a few KiB, whatever the bundle's
//! size) and then only the part it needs. Outputs appear atomically: a temporary file or
//! directory next to the target, renamed into place when complete. The modes live in their
//! modules: [`output`] (parts and trees), [`info`], [`thumbnail`] and [`desktop`] (menu
//! entries); the manual page and completions come from [`glick_cli`].

#![forbid(unsafe_code)]

mod desktop;
mod exec_line;
mod info;
mod output;
mod thumbnail;

use std::fs::File;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail};
use clap::{ArgGroup, CommandFactory as _, Parser};
use glick_bundle::Bundle;

use crate::output::path_error;

/// Take a glick bundle apart without running or mounting it
#[derive(Debug, Parser)]
#[command(
    name = "glick-extract",
    version,
    group(ArgGroup::new("mode").required(true).args(
        ["image", "icon", "desktop_file", "tree", "info", "verify", "thumbnail",
         "install_desktop", "uninstall_desktop"])),
    override_usage = "glick-extract --image|--icon|--desktop-file GLICK TARGET\n       \
                      glick-extract --tree GLICK DIR\n       \
                      glick-extract --info|--verify GLICK\n       \
                      glick-extract --thumbnail GLICK OUTPUT SIZE\n       \
                      glick-extract --install-desktop|--uninstall-desktop GLICK",
    long_about = "Take a glick bundle apart without running or mounting it.\n\n\
                  glick-extract reads the bundle's ELF section table and copies out the part asked for. \
                  TARGET - writes to standard output.\n\n\
                  --thumbnail is the freedesktop thumbnailer entry point (glick.thumbnailer \
                  runs `glick-extract --thumbnail %i %o %s`): the 48×48 icon as a PNG \
                  enlarged by the largest whole factor that fits in SIZE×SIZE (SIZE at most \
                  1024), or reduced with an area filter below 48.\n\n\
                  --install-desktop puts the bundle's desktop entry and icon in \
                  $XDG_DATA_HOME (~/.local/share) with Exec pointing at the bundle; \
                  --uninstall-desktop removes exactly those files.",
    after_help = "The mode comes first, then the bundle, then where to write (Glick 1's order).\n\n\
                  Examples:\n  glick-extract --image app.glick app.ext2\n  \
                  glick-extract --icon app.glick icon.png\n  \
                  glick-extract --tree app.glick ./app\n  glick-extract --info app.glick\n  \
                  glick-extract --verify app.glick\n  \
                  glick-extract --thumbnail app.glick thumb.png 256\n  \
                  glick-extract --install-desktop ~/Apps/app.glick"
)]
struct Cli {
    /// Write the ext2 image: --image GLICK TARGET
    #[arg(long)]
    image: bool,
    /// Write the 48×48 PNG icon: --icon GLICK TARGET
    #[arg(long)]
    icon: bool,
    /// Write the desktop entry: --desktop-file GLICK TARGET
    #[arg(long)]
    desktop_file: bool,
    /// Recreate the image's file tree in DIR (new, or empty): --tree GLICK DIR
    #[arg(long)]
    tree: bool,
    /// Describe the bundle: sections, image, desktop entry, digest: --info GLICK
    #[arg(long)]
    info: bool,
    /// Check the image against the recorded SHA-256 (exit 1 on mismatch): --verify GLICK
    #[arg(long)]
    verify: bool,
    /// Write a SIZE-pixel PNG thumbnail of the icon (freedesktop `%i %o %s`): --thumbnail GLICK OUTPUT SIZE
    #[arg(long)]
    thumbnail: bool,
    /// Add the bundle to the application menu ($XDG_DATA_HOME): --install-desktop GLICK
    #[arg(long)]
    install_desktop: bool,
    /// Remove what --install-desktop installed for the bundle: --uninstall-desktop GLICK
    #[arg(long)]
    uninstall_desktop: bool,
    /// The bundle
    glick: PathBuf,
    /// Where to write (TARGET, DIR or OUTPUT, then SIZE for --thumbnail)
    #[arg(value_name = "TARGET")]
    rest: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().collect();
    if let Some(code) = glick_cli::handle(&args, Cli::command) {
        return code;
    }
    let cli = Cli::parse_from(args);
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("glick-extract: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn usage(message: &str) -> ! {
    Cli::command()
        .error(clap::error::ErrorKind::WrongNumberOfValues, message)
        .exit()
}

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let glick = cli.glick.as_path();
    let wants = |n: usize, what: &str| {
        if cli.rest.len() != n {
            usage(what);
        }
    };
    if cli.info || cli.verify {
        wants(0, "--info and --verify take only the bundle: GLICK");
    } else if cli.install_desktop || cli.uninstall_desktop {
        wants(
            0,
            "--install-desktop and --uninstall-desktop take only the bundle: GLICK",
        );
    } else if cli.tree {
        wants(1, "--tree takes the bundle and a directory: GLICK DIR");
    } else if cli.thumbnail {
        wants(
            2,
            "--thumbnail takes the bundle, the output and the size: GLICK OUTPUT SIZE",
        );
    } else {
        wants(1, "the bundle and a target are needed: GLICK TARGET");
    }
    if cli.uninstall_desktop {
        // The bundle may be gone already: uninstall needs only its path.
        desktop::uninstall(glick)?;
        return Ok(ExitCode::SUCCESS);
    }
    let file = File::open(glick).map_err(|e| path_error(glick, &e))?;
    if file.metadata().map_err(|e| path_error(glick, &e))?.is_dir() {
        bail!("{}: is a directory, not a bundle", glick.display());
    }
    let bundle = Bundle::open(&file).map_err(|e| anyhow!("{}: {e}", glick.display()))?;
    let missing = |what: &str| anyhow!("{}: the bundle has no {what}", glick.display());
    match cli.rest.first() {
        Some(target) if cli.image => output::write_part(glick, &file, bundle.image(), target)?,
        Some(target) if cli.icon => {
            let part = bundle
                .icon()
                .ok_or_else(|| missing("icon (.xdg.icon.48)"))?;
            output::write_part(glick, &file, part, target)?;
        }
        Some(target) if cli.desktop_file => {
            let part = bundle
                .desktop_entry()
                .ok_or_else(|| missing("desktop entry (.xdg.desktop)"))?;
            output::write_part(glick, &file, part, target)?;
        }
        Some(target) if cli.tree => output::extract_tree(glick, file, &bundle, target)?,
        Some(target) if cli.thumbnail => {
            let size = cli.rest[1].to_string_lossy();
            let size = thumbnail::parse_size(&size)?;
            thumbnail::write(glick, &file, &bundle, target, size)?;
        }
        _ if cli.info => info::info(glick, file, &bundle)?,
        _ if cli.verify => return info::verify(glick, &file, &bundle),
        _ if cli.install_desktop => desktop::install(glick, &file, &bundle)?,
        _ => bail!("no mode given"),
    }
    Ok(ExitCode::SUCCESS)
}

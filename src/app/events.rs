//! `wxlogin events export|import|schemas`: the results stream's events as files
//! ([`crate::fixtures`]), with a progress bar on a terminal, and the events' JSON Schemas.

use std::path::PathBuf;

use anyhow::{Context as _, bail};

use super::Pipeline;
use crate::{
    contract::access::Identity,
    fixtures::{self, Rekey, Until},
    settings::Settings,
    upsert::ReplayFrom,
};

#[derive(Debug, clap::Subcommand)]
pub enum EventsCommand {
    /// Write the retained result events (logins, learnt unionids, …) as JSON Lines, one event
    /// a line with its stream sequence and time; secrets stay sealed.
    Export(ExportArgs),
    /// Publish a file's events into this deployment's results stream, each once (an event its
    /// stream already holds is not published again).
    Import(ImportArgs),
    /// Write the JSON Schema of every event type and version (and of an export's line).
    Schemas {
        /// Where to write them (default: print the names and schemas to stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub from: super::FromArgs,
    /// Stop after this sequence or time (inclusive).
    #[arg(long)]
    pub until: Option<Until>,
    /// The file to write (default: stdout).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace openids and unionids by consistent fakes, leave the session keys out: a
    /// fixture from real traffic that can be committed.
    #[arg(long)]
    pub redact: bool,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The export file (JSON Lines).
    pub file: PathBuf,
    /// The recording deployment's master key(s), if not this one's: its session keys are
    /// sealed again under this deployment's key.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
}

impl super::FromArgs {
    pub fn start(&self) -> ReplayFrom {
        match (self.from_seq, self.from_time) {
            (Some(s), _) => ReplayFrom::Sequence(s),
            (None, Some(t)) => ReplayFrom::Time(t),
            (None, None) => ReplayFrom::Start,
        }
    }
}

/// Moves `bar` to `at` of `len`, saying `message`.
pub fn show(bar: &indicatif::ProgressBar, (at, len): (u64, u64), message: String) {
    bar.set_length(len);
    bar.set_position(at);
    bar.set_message(message);
}

/// A progress bar on stderr; indicatif draws nothing when stderr is not a terminal.
pub fn bar(template: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(indicatif::ProgressStyle::with_template(template).expect("valid template"));
    bar
}

/// This deployment's keys and the recording one's (`--key-file`).
pub fn rekey(settings: &Settings, key_file: Option<&std::path::Path>) -> anyhow::Result<Rekey> {
    let target = settings.keyring()?;
    let recording = match key_file {
        Some(path) => Some(fixtures::rekey::read_key_file(path).map_err(anyhow::Error::msg)?),
        None => None,
    };
    match (&target, &recording) {
        (None, Some(_)) => bail!(
            "--key-file needs this deployment's master key (WXLOGIN_MASTER_KEY) to seal under"
        ),
        (None, None) => eprintln!(
            "warning: no master key configured (WXLOGIN_MASTER_KEY): session keys are taken as \
             recorded, sealed under the recording deployment's key"
        ),
        _ => {}
    }
    Ok(Rekey { target, recording })
}

/// Opens an export file as a source of events.
pub fn open_file(
    path: &std::path::Path,
    rekey: Rekey,
) -> anyhow::Result<fixtures::FileEvents<std::io::BufReader<std::fs::File>>> {
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    Ok(fixtures::FileEvents::new(fixtures::open(path)?, rekey, len))
}

/// What a file held that was not taken, line by line; an error if anything was.
pub fn report_left_out<R>(file: &fixtures::FileEvents<R>) -> anyhow::Result<()> {
    for p in &file.lines.problems {
        eprintln!("not read: {p}");
    }
    for u in &file.unopenable {
        eprintln!("not applied: {u}");
    }
    let (bad, unopenable) = (file.lines.problems.len(), file.unopenable.len());
    if bad + unopenable > 0 {
        bail!(
            "{bad} line(s) could not be read and {unopenable} event(s) could not be opened here \
             (listed above); everything else was taken"
        );
    }
    Ok(())
}

pub async fn run(settings: &Settings, command: EventsCommand) -> anyhow::Result<()> {
    match command {
        EventsCommand::Schemas { out } => schemas(out),
        EventsCommand::Export(args) => export(settings, args).await,
        EventsCommand::Import(args) => import(settings, args).await,
    }
}

fn schemas(out: Option<PathBuf>) -> anyhow::Result<()> {
    use crate::contract::events::schema;
    match out {
        Some(dir) => {
            for path in schema::write_all(&dir).context("cannot write the schemas")? {
                eprintln!("wrote {}", path.display());
            }
        }
        None => {
            for (name, make) in schema::SCHEMAS {
                println!("// {name}.json\n{}", schema::file_text(*make));
            }
        }
    }
    Ok(())
}

async fn export(settings: &Settings, args: ExportArgs) -> anyhow::Result<()> {
    let pipeline = Pipeline::connect(settings, Identity::Admin).await?;
    let bar = bar("{bar:40} {pos}/{len} seq  {per_sec}  {msg}");
    let redactor = args.redact.then(fixtures::Redactor::new);
    let mut out: Box<dyn std::io::Write> = match &args.out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let stats = fixtures::export(
        &pipeline.js,
        &pipeline.topology,
        args.from.start(),
        args.until,
        redactor.as_ref(),
        &mut out,
        |s, at| show(&bar, at, format!("{} events", s.events)),
    )
    .await?;
    bar.finish_and_clear();
    eprintln!(
        "exported {} events (up to seq {})",
        stats.events, stats.last_seq
    );
    if stats.left_out > 0 {
        eprintln!(
            "left out {} payloads that are not JSON objects: --redact cannot check them",
            stats.left_out
        );
    }
    Ok(())
}

async fn import(settings: &Settings, args: ImportArgs) -> anyhow::Result<()> {
    let pipeline = Pipeline::connect(settings, Identity::Admin).await?;
    let mut file = open_file(&args.file, rekey(settings, args.key_file.as_deref())?)?;
    let bar = bar("{bar:40} {bytes}/{total_bytes}  {msg}");
    let stats = fixtures::import(&pipeline.js, &pipeline.topology, &mut file, |s, at| {
        show(&bar, at, format!("{} published", s.published))
    })
    .await?;
    bar.finish_and_clear();
    eprintln!(
        "published {} events; {} were already there",
        stats.published, stats.already_there
    );
    for r in &stats.refused {
        eprintln!("refused: {r}");
    }
    report_left_out(&file)?;
    if !stats.refused.is_empty() {
        bail!("{} event(s) refused (listed above)", stats.refused.len());
    }
    Ok(())
}

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = phonecheck::cli::Cli::parse();
    phonecheck::cli::run(cli).await?;
    Ok(())
}

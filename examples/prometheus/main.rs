//! The middleware's metrics on a Prometheus endpoint, offline:
//!
//! ```sh
//! cargo run --example prometheus --features metrics
//! ```
//!
//! It installs `metrics-exporter-prometheus` as the global recorder, serves `/metrics` on
//! 127.0.0.1, drives a short storm against the mock kit (a rate limit, an overload, a model
//! down while its fallback answers, an outage and its recovery), then prints what a Prometheus
//! scraping that endpoint reads.
//! `docs/dashboard.json` is a Grafana dashboard over these series.

mod storm;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let handle = storm::recorder()?;
    let address = storm::serve(handle).await?;
    println!("# serving http://{address}/metrics");
    for phase in storm::storm().await? {
        println!(
            "# {:<10} {:<9} {} calls, {} succeeded, {} by a fallback model ({} straight there), {} requests answered",
            phase.name,
            phase.provider.name(),
            phase.calls,
            phase.successes,
            phase.fallbacks,
            phase.straight,
            phase.answered
        );
    }
    print!("{}", storm::scrape(address).await?);
    Ok(())
}

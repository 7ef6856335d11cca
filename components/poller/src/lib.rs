//! The `poller` component: thin I/O around the core; see `tick.rs`.

mod attachments;
mod tick;

#[cfg(feature = "cron")]
mod cron {
    wit_bindgen::generate!({ world: "spin-cron", path: "../../wit/cron.wit" });

    struct Cron;

    impl Guest for Cron {
        async fn handle_cron_event(_metadata: Metadata) -> Result<(), Error> {
            connector_io::tick::cron_tick(crate::tick::run()).map_err(Error::Other)
        }
    }

    export!(Cron);
}

/// The HTTP tick route, for hosts without cron.
#[spin_sdk::http_component]
async fn handle(req: spin_sdk::http::Request) -> spin_sdk::http::Response {
    connector_io::tick::http_tick(req, tick::run).await
}

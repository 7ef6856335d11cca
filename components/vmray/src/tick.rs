pub async fn run() -> Result<String, String> { Err("todo".into()) }

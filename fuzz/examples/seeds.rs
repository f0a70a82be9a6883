//! Writes the seed corpora under `fuzz/corpus/`.

fn main() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let seeds: &[(&str, &[&[u8]])] = &[
        (
            "address",
            &[
                b"/fn/acme/hello/",
                b"/fn/acme/hello:prod/a/b?c=d",
                b"/fn/acme/hello:12/",
                b"acme/hello:latest/x",
                b"hello--acme.fn.example:8080",
                b"Cust_01.eu-west",
            ],
        ),
        (
            "admin_bodies",
            &[
                br#"{"name":"acme"}"#,
                br#"{"sub_tenant":"alice","ttl_s":900}"#,
                br#"{"blob":"00","public":true,"tenancy":"multi","reuse":"warm","timeout_ms":500,"memory_mb":64,"env":{"A":"b"},"allow_outbound":["api.example:443"]}"#,
                br#"{"version":1,"weight":{"version":2,"percent":10},"overrides":{"env":{"X":"1"},"timeout_ms":100}}"#,
                br#"{"alias":"prod"}"#,
                br#"{"min":1,"target":4,"sub_tenant":"alice"}"#,
                br#"{"timeout_ms":10,"memory_mb":32}"#,
            ],
        ),
    ];
    for (target, inputs) in seeds {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        for (i, input) in inputs.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), input)?;
        }
    }
    let dir = root.join("tokens");
    std::fs::create_dir_all(&dir)?;
    for (i, token) in stratus_fuzz::KEYS.signed.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i}")), token)?;
    }
    Ok(())
}

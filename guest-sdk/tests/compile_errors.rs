//! `#[stratus_sdk::handler]` accepts exactly `fn(Request) -> Response` and
//! points at the signature otherwise.

#[test]
fn handler_signatures() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass_plain_handler.rs");
    cases.compile_fail("tests/ui/fail_*.rs");
}

//! `#[stratus_sdk::handler]` accepts `fn(Request) -> impl IntoResponse`, once per crate, and
//! points at the signature otherwise.

#[test]
fn handler_signatures() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass_*.rs");
    cases.compile_fail("tests/ui/fail_*.rs");
}

//! The other tests in this directory need the `testing` feature
//! (`fdctx::testing`), and cargo skips them without a word when it is off.
//! This one says so instead of letting a plain `cargo test` look green.

#[test]
#[cfg(not(feature = "testing"))]
fn integration_tests_were_skipped() {
    panic!("the tests in tests/ need the `testing` feature: run `cargo test --features testing` (or `make check`)");
}

#[test]
#[cfg(feature = "testing")]
fn integration_tests_run_with_the_testing_feature() {
    let _check = fdctx::testing::fdcount::FdLeakCheck::new();
}

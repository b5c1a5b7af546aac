//! Health follows the DB directory; scans are refused without it.

use crate::common::fixture_db;
use sidescan_proto::mime;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::{Setup, UPDATED_AT};

#[tokio::test]
async fn health_follows_the_db_dir_and_scans_are_refused_without_it() {
    let s = Setup::start().await;
    let mut client = s.plugin.scan_client().await;
    let req = s.request(&[(mime::VULNERABILITY_REPORT, &[])]);

    std::fs::remove_dir_all(s.world.db_dir()).expect("remove the DB dir");
    assert!(
        s.wait_health(ServingStatus::NotServing).await,
        "NOT_SERVING without the DB dir; log:\n{}",
        s.plugin.logs()
    );
    let err = client
        .scan_image(req.clone())
        .await
        .expect_err("no scan without a DB");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");

    fixture_db::write_standard(&s.world.db_dir(), UPDATED_AT);
    assert!(
        s.wait_health(ServingStatus::Serving).await,
        "SERVING again once the DB is back; log:\n{}",
        s.plugin.logs()
    );
    let report = client
        .scan_image(req)
        .await
        .expect("scan with the DB back")
        .into_inner()
        .report
        .unwrap();
    assert_eq!(report.summary.unwrap().total, 3);
}

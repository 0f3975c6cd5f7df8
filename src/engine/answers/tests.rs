//! Unit tests of `answers.rs`.

use super::*;
use crate::domain::{LineStatus, LineStatusResult};

fn line() -> CheckData {
    CheckData::LineStatus(LineStatusResult::new(LineStatus::Empty, "1", "空号"))
}

#[tokio::test]
async fn answers_survive_reopening_and_expire_by_the_configured_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let cache = CacheConfig::default();
    let answers = Answers::open(&cache, dir.path(), None).await;
    let id = answers.id("thinksms", Check::LineStatus, "+8613800138000", None, None);
    let fetched_at = SystemTime::now() - Duration::from_secs(60);
    let row = answers.hold(id, Check::LineStatus, &line(), fetched_at, false);
    answers.persist(vec![row]).await;
    answers.flush().await;
    drop(answers);

    let again = Answers::open(&cache, dir.path(), None).await;
    assert_eq!(
        again.id("thinksms", Check::LineStatus, "+8613800138000", None, None),
        id,
        "the same key"
    );
    let hit = again
        .lookup(
            &id,
            Wanted {
                check: Check::LineStatus,
                max_age: None,
                profiles: false,
            },
        )
        .await
        .unwrap();
    assert_eq!((hit.data, hit.tier), (line(), Tier::Store));
    let hit = again
        .lookup(
            &id,
            Wanted {
                check: Check::LineStatus,
                max_age: None,
                profiles: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(hit.tier, Tier::Memory);
    assert!(
        again
            .lookup(
                &id,
                Wanted {
                    check: Check::LineStatus,
                    max_age: Some(Duration::from_secs(30)),
                    profiles: false
                }
            )
            .await
            .is_none(),
        "max_cache_age"
    );
    drop(again);

    let mut shorter = CacheConfig::default();
    shorter.ttl[Check::LineStatus] = Duration::from_secs(30);
    let expired = Answers::open(&shorter, dir.path(), None).await;
    assert!(
        expired
            .lookup(
                &id,
                Wanted {
                    check: Check::LineStatus,
                    max_age: None,
                    profiles: false
                }
            )
            .await
            .is_none()
    );
}

#[tokio::test]
async fn forgetting_a_number_forgets_every_answer_about_it() {
    let dir = tempfile::tempdir().unwrap();
    let answers = Answers::open(&CacheConfig::default(), dir.path(), None).await;
    let number = "+8613800138000";
    let kyc = KycInput {
        name: Some("x".to_owned()),
        ..KycInput::default()
    };
    let ids = [
        answers.id("a", Check::LineStatus, number, None, None),
        answers.id("b", Check::LineStatus, number, Some(&kyc), None),
    ];
    let other = answers.id("a", Check::LineStatus, "+8613800138001", None, None);
    let rows = [ids[0], ids[1], other]
        .map(|id| answers.hold(id, Check::LineStatus, &line(), SystemTime::now(), false));
    answers.persist(rows.to_vec()).await;
    assert_eq!(answers.forget(&[number.to_owned()]).await.unwrap(), 2);
    for id in &ids {
        assert!(
            answers
                .lookup(
                    id,
                    Wanted {
                        check: Check::LineStatus,
                        max_age: None,
                        profiles: false
                    }
                )
                .await
                .is_none()
        );
    }
    assert!(
        answers
            .lookup(
                &other,
                Wanted {
                    check: Check::LineStatus,
                    max_age: None,
                    profiles: false
                }
            )
            .await
            .is_some()
    );
    let stats = answers.stats().await;
    assert_eq!(stats.store.unwrap().entries, 1);
}

#[tokio::test]
async fn an_answer_stored_without_profiles_is_not_served_to_a_caller_granted_them() {
    let answers = Answers::memory(&CacheConfig::default());
    let id = answers.id(
        "tongdun",
        Check::AccountPresence,
        "+6281234567890",
        None,
        None,
    );
    let data = CheckData::SpamLabels(Default::default());
    answers.hold(id, Check::AccountPresence, &data, SystemTime::now(), true);
    assert!(
        answers
            .lookup(
                &id,
                Wanted {
                    check: Check::AccountPresence,
                    max_age: None,
                    profiles: false
                }
            )
            .await
            .is_some()
    );
    assert!(
        answers
            .lookup(
                &id,
                Wanted {
                    check: Check::AccountPresence,
                    max_age: None,
                    profiles: true
                }
            )
            .await
            .is_none()
    );
}

//! The request bounds' tests.

use super::*;

fn message(len: u32) -> Vec<u8> {
    let mut m = vec![0u8];
    m.extend_from_slice(&len.to_be_bytes());
    m.extend(std::iter::repeat_n(7u8, len as usize));
    m
}

#[test]
fn framing_counts_only_the_unfinished_message() {
    let mut framing = Framing::default();
    let mut bytes = message(10);
    bytes.extend(message(0));
    bytes.extend(&message(100)[..30]);
    framing.read(&bytes[..3]);
    assert_eq!(framing.unfinished, 3, "a prefix begun");
    framing.read(&bytes[3..15]);
    assert_eq!(framing.unfinished, 0, "the first message whole");
    framing.read(&bytes[15..]);
    assert_eq!(
        framing.unfinished, 30,
        "the empty message passes, the third is 30 bytes in"
    );
    assert!(framing.restarted);
    framing.read(&message(100)[30..]);
    assert_eq!(framing.unfinished, 0);
}

#[test]
fn a_declared_length_is_claimed_whole_if_a_service_would_reserve_it() {
    let mut framing = Framing::default();
    framing.read(&[0, 0, 0]);
    assert_eq!(framing.claim(1000), 3, "a prefix begun");
    framing.read(&[0, 100, 1, 2]);
    assert_eq!(
        framing.claim(1000),
        105,
        "the declared 100 bytes, reserved by tonic"
    );
    assert_eq!(
        framing.claim(99),
        7,
        "past every limit: refused unread, what came"
    );
    framing.read(&[7; 98]);
    assert_eq!((framing.claim(1000), framing.completed), (0, 1));
}

#[test]
fn a_declared_length_past_every_limit_takes_only_its_bytes() {
    let mut framing = Framing::default();
    framing.read(&[0, 0xff, 0xff, 0xff, 0xff, 1, 2]);
    assert_eq!(framing.claim(4 << 20), 7);
    assert_eq!(framing.remaining, u64::from(u32::MAX) - 2);
}

#[test]
fn caps_refuse_and_give_back() {
    let pending = PendingBytes::new(
        &ConnectionsConfig {
            max_pending_bytes_per_connection: 10,
            max_pending_bytes: 15,
            ..ConnectionsConfig::default()
        },
        100,
    );
    let (a, b) = (AtomicUsize::new(0), AtomicUsize::new(0));
    assert_eq!(pending.take(&a, 11), Err("connection"));
    pending.take(&a, 10).unwrap();
    assert_eq!(pending.take(&b, 6), Err("process"));
    assert_eq!(b.load(Ordering::Relaxed), 0, "nothing kept of a refusal");
    pending.give_back(&a, 4);
    pending.take(&b, 6).unwrap();
    assert_eq!(pending.held(), 12);
}

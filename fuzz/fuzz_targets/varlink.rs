//! The diagnostics socket's input path, as the shim runs it on a client's bytes: NUL framing
//! under a size cap, each frame decoded as a varlink call, and its parameters decoded into the
//! types the methods take. Also the probe's side: a frame decoded as a reply.
//!
//! The first byte sets how many bytes each read delivers and the second the frame cap, so that
//! frames are split at every place and the cap is reached (the real cap, 64 KiB, is larger
//! than libFuzzer's inputs).

#![no_main]

use husk_proto::serde::de::DeserializeOwned;
use husk_proto::serde::Serialize;
use husk_proto::{encode, Call, Decoder, FrameError, InterfaceParam, NameParam, PidParam, Reply, MAX_REQUEST};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [read_size, cap, stream @ ..] = data else {
        return;
    };
    let read_size = usize::from(*read_size).max(1);
    let cap = match cap {
        0 => MAX_REQUEST,
        n => usize::from(*n) * 4,
    };
    for frame in frames(stream, read_size, cap) {
        decode_call(&frame);
        let _ = serde_json::from_slice::<Reply>(&frame);
    }
});

/// Feeds `stream` to a decoder the way the connection's read loop does and checks that the
/// frames are exactly the NUL-separated pieces of the stream, up to the first oversized one.
fn frames(stream: &[u8], read_size: usize, cap: usize) -> Vec<Vec<u8>> {
    let mut decoder = Decoder::new(cap);
    let mut pushed = 0;
    let mut start = 0;
    let mut out = Vec::new();
    loop {
        match decoder.next_message() {
            Ok(Some(frame)) => {
                let end = start + frame.len();
                assert_eq!(&stream[start..end], &frame[..], "a frame is not the stream's bytes");
                assert_eq!(stream.get(end), Some(&0), "a frame does not end at a NUL");
                start = end + 1;
                decoder.shrink();
                out.push(frame);
            }
            Ok(None) if pushed == stream.len() => {
                assert!(!stream[start..].contains(&0), "a complete frame was left in the buffer");
                return out;
            }
            Ok(None) => {
                let n = read_size.min(decoder.room()).min(stream.len() - pushed);
                assert!(n > 0, "the decoder has no room but reports no oversized frame");
                decoder.push(&stream[pushed..pushed + n]);
                pushed += n;
            }
            Err(FrameError::TooLarge) => {
                assert!(pushed - start >= cap, "refused a frame below the cap");
                assert!(
                    !stream[start..start + cap].contains(&0),
                    "refused a frame that had ended"
                );
                return out;
            }
        }
    }
}

/// A call and the parameters of every method kind; whatever decodes survives a round trip.
fn decode_call(frame: &[u8]) {
    let Ok(call) = serde_json::from_slice::<Call>(frame) else {
        return;
    };
    let encoded = encode(&call);
    let again: Call = serde_json::from_slice(&encoded[..encoded.len() - 1]).expect("an encoded call decodes");
    assert_eq!(
        (&call.method, call.oneway, call.more, call.upgrade),
        (&again.method, again.oneway, again.more, again.upgrade)
    );
    if let Some(parameters) = call.parameters {
        round_trip::<PidParam>(&parameters);
        round_trip::<NameParam>(&parameters);
        round_trip::<InterfaceParam>(&parameters);
    }
}

fn round_trip<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(parameters: &serde_json::Value) {
    if let Ok(typed) = serde_json::from_value::<T>(parameters.clone()) {
        let value = serde_json::to_value(&typed).expect("parameters serialize");
        assert_eq!(serde_json::from_value::<T>(value).ok(), Some(typed));
    }
}

//! The gRPC codec of the etcd API: prost, with per-call buffers sized for KV requests.
//!
//! tonic allocates one encode and one decode buffer per call (8 KiB each by default) and
//! grows them by that step. An etcd put or range request, and most answers, fit in a few
//! hundred bytes: 1 KiB buffers come from the allocator's per-thread cache instead of its
//! shared heap, on both sides of every call. A larger message still works; its buffer grows
//! in 1 KiB steps (the same number of reallocations as the default's 8 KiB steps for the
//! messages the benchmarks send, and a few more for a large range answer).

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Bytes allocated up front per call and direction.
const BUFFER_SIZE: usize = 1024;

/// How many bytes of a streamed answer are batched before they are sent (tonic's default).
const YIELD_THRESHOLD: usize = 32 * 1024;

/// [`ProstCodec`] with [`BUFFER_SIZE`] buffers; the generated clients and servers use it.
#[derive(Debug, Clone)]
pub struct KvCodec<T, U>(std::marker::PhantomData<(T, U)>);

impl<T, U> Default for KvCodec<T, U> {
    fn default() -> Self {
        KvCodec(std::marker::PhantomData)
    }
}

impl<T, U> Codec for KvCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD))
    }
}

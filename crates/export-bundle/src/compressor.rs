//! The zstd compression of `tar.zst` bundles, through contexts kept between bundles.
//!
//! A context with workers owns their threads and their buffers, tens of MiB at level 3.
//! Making one per bundle started two threads and allocated those buffers anew for every
//! run, even a run of a few KiB, and glibc's allocator kept the freed buffers in its
//! arenas: a server bundling a run every 2 s grew for the whole of a 20-minute soak
//! (docs/reliability.md). Contexts taken from [`CONTEXTS`] and put back when the bundle
//! ends keep that memory at what the concurrent bundles need.
//!
//! A context that is reused starts a new frame with the same parameters, so the output is
//! the same bytes as from a new context: zstd's output depends on the parameters and the
//! input only (`tests::reused_contexts_compress_as_new_ones`).

use std::io;
use std::sync::{Mutex, PoisonError};

use zstd::stream::raw::{InBuffer, Operation, OutBuffer, WriteBuf};
use zstd::zstd_safe::{self, CCtx, CParameter, ResetDirective};

/// The zstd level of `tar.zst` bundles.
const LEVEL: i32 = 3;
/// zstd's worker threads for `tar.zst` bundles: they compress while the caller frames the
/// next entries. zstd's multithreaded output depends on the parameters, never on the
/// number of workers or their timing, so the bytes stay reproducible.
pub(crate) const WORKERS: u32 = 2;
/// Idle contexts kept for later bundles: as many as bundles usually run at once; a
/// context put back beyond that is freed.
const KEPT: usize = 4;

/// The process's contexts.
pub(crate) static CONTEXTS: Contexts = Contexts::new(KEPT);

/// Contexts no bundle is using, all configured alike by [`new_context`].
pub(crate) struct Contexts {
    idle: Mutex<Vec<CCtx<'static>>>,
    kept: usize,
}

impl Contexts {
    const fn new(kept: usize) -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            kept,
        }
    }

    /// A compressor on an idle context, or on a new one when none is idle.
    pub(crate) fn take(&'static self) -> io::Result<Compressor> {
        let context = match self.lock().pop() {
            Some(context) => context,
            None => new_context(WORKERS)?,
        };
        Ok(Compressor {
            context: Some(context),
            home: Some(self),
        })
    }

    fn put_back(&self, context: CCtx<'static>) {
        let mut idle = self.lock();
        if idle.len() < self.kept {
            idle.push(context);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<CCtx<'static>>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A zstd stream compressor on a context, which it puts back where it came from when
/// dropped.
pub(crate) struct Compressor {
    context: Option<CCtx<'static>>,
    home: Option<&'static Contexts>,
}

impl Compressor {
    fn context(&mut self) -> &mut CCtx<'static> {
        self.context
            .as_mut()
            .expect("a compressor holds its context until dropped")
    }
}

impl Drop for Compressor {
    fn drop(&mut self) {
        let (Some(mut context), Some(home)) = (self.context.take(), self.home) else {
            return;
        };
        // A bundle abandoned midway leaves part of its frame in the context: drop it, so
        // that the next bundle starts afresh. Parameters are kept.
        if context.reset(ResetDirective::SessionOnly).is_ok() {
            home.put_back(context);
        }
    }
}

/// A context with the parameters of every bundle: the level, a checksum of the content
/// (as the zstd command writes by default; the content size is left out because a stream
/// does not know it up front), and `workers` workers.
fn new_context(workers: u32) -> io::Result<CCtx<'static>> {
    let mut context = CCtx::try_create()
        .ok_or_else(|| io::Error::other("zstd could not allocate a compression context"))?;
    for parameter in [
        CParameter::CompressionLevel(LEVEL),
        CParameter::ChecksumFlag(true),
        CParameter::NbWorkers(workers),
    ] {
        context.set_parameter(parameter).map_err(zstd_error)?;
    }
    Ok(context)
}

impl Operation for Compressor {
    fn run<C: WriteBuf + ?Sized>(
        &mut self,
        input: &mut InBuffer<'_>,
        output: &mut OutBuffer<'_, C>,
    ) -> io::Result<usize> {
        self.context().compress_stream(output, input).map_err(zstd_error)
    }

    fn flush<C: WriteBuf + ?Sized>(&mut self, output: &mut OutBuffer<'_, C>) -> io::Result<usize> {
        self.context().flush_stream(output).map_err(zstd_error)
    }

    fn finish<C: WriteBuf + ?Sized>(
        &mut self,
        output: &mut OutBuffer<'_, C>,
        _finished_frame: bool,
    ) -> io::Result<usize> {
        self.context().end_stream(output).map_err(zstd_error)
    }

    fn reinit(&mut self) -> io::Result<()> {
        self.context()
            .reset(ResetDirective::SessionOnly)
            .map_err(zstd_error)?;
        Ok(())
    }
}

fn zstd_error(code: zstd_safe::ErrorCode) -> io::Error {
    io::Error::other(format!("zstd: {}", zstd_safe::get_error_name(code)))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use zstd::stream::zio;

    use super::*;

    /// Several of zstd's jobs (a job is 4 × the window at level 3), not all alike.
    fn sample() -> Vec<u8> {
        (0..40_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 27) as u8)
            .collect()
    }

    fn compress(operation: impl Operation, data: &[u8]) -> Vec<u8> {
        let mut writer = zio::Writer::new(Vec::new(), operation);
        writer.write_all(data).unwrap();
        writer.finish().unwrap();
        writer.into_inner().0
    }

    /// A compressor on a new context with `workers` workers, kept nowhere.
    fn fresh(workers: u32) -> Compressor {
        Compressor {
            context: Some(new_context(workers).unwrap()),
            home: None,
        }
    }

    #[test]
    fn zstd_output_does_not_depend_on_the_number_of_workers() {
        let data = sample();
        let two = compress(fresh(WORKERS), &data);
        // The same bytes as the zstd crate's encoder with the same settings.
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), LEVEL).unwrap();
        encoder.include_checksum(true).unwrap();
        encoder.multithread(WORKERS).unwrap();
        encoder.write_all(&data).unwrap();
        assert!(encoder.finish().unwrap() == two);
        assert_eq!(compress(fresh(1), &data), two);
        assert_eq!(compress(fresh(4), &data), two);
        assert_eq!(zstd::decode_all(&two[..]).unwrap(), data);
    }

    #[test]
    fn reused_contexts_compress_as_new_ones() {
        let contexts: &'static Contexts = Box::leak(Box::new(Contexts::new(1)));
        let data = sample();
        let expected = compress(fresh(WORKERS), &data);
        // A bundle abandoned midway: its context goes back with half a frame in it.
        let mut abandoned = zio::Writer::new(Vec::new(), contexts.take().unwrap());
        abandoned.write_all(&data[..data.len() / 2]).unwrap();
        drop(abandoned);
        for _ in 0..3 {
            assert_eq!(contexts.lock().len(), 1, "the context was not put back");
            assert!(compress(contexts.take().unwrap(), &data) == expected);
        }
        // Only `kept` idle contexts stay.
        let (first, second) = (contexts.take().unwrap(), contexts.take().unwrap());
        drop((first, second));
        assert_eq!(contexts.lock().len(), 1);
    }
}

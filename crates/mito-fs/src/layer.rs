//! The opendal side of [`FaultFs`]: object writes, deletes and renames through an operator
//! are recorded (and refused after a cut) like the `Fs` calls of the WAL.

use std::path::{Path, PathBuf};

use opendal::raw::{
    OpCopy, OpCreateDir, OpDelete, OpList, OpPresign, OpRead, OpRename, OpStat, OpWrite,
    RpCreateDir, RpPresign, RpRename, RpStat, Service, ServiceInfo, Servicer, oio,
};
use opendal::{Buffer, Capability, Error, ErrorKind, Metadata, OperationContext, Result};

use crate::fault::FaultFs;

/// Applies a [`FaultFs`] to an operator over the local directory `root`.
#[derive(Debug)]
pub(crate) struct FaultLayer {
    fs: FaultFs,
    root: PathBuf,
}

impl FaultLayer {
    pub(crate) fn new(fs: FaultFs, root: PathBuf) -> Self {
        Self { fs, root }
    }
}

impl opendal::raw::Layer for FaultLayer {
    fn apply_service(&self, inner: Servicer) -> Servicer {
        std::sync::Arc::new(FaultService {
            inner,
            fs: self.fs.clone(),
            root: self.root.clone(),
        })
    }
}

#[derive(Debug)]
struct FaultService {
    inner: Servicer,
    fs: FaultFs,
    root: PathBuf,
}

fn to_opendal(e: std::io::Error) -> Error {
    Error::new(ErrorKind::Unexpected, e.to_string())
}

fn abs(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

impl Service for FaultService {
    type Reader = oio::Reader;
    type Writer = FaultWriter;
    type Lister = oio::Lister;
    type Deleter = FaultDeleter;
    type Copier = oio::Copier;
    type Composer = oio::Composer;

    fn info(&self) -> ServiceInfo {
        self.inner.info()
    }

    fn capability(&self) -> Capability {
        self.inner.capability()
    }

    async fn create_dir(
        &self,
        ctx: &OperationContext,
        path: &str,
        args: OpCreateDir,
    ) -> Result<RpCreateDir> {
        self.fs
            .object_create_dir(&abs(&self.root, path))
            .map_err(to_opendal)?;
        self.inner.create_dir(ctx, path, args).await
    }

    async fn stat(&self, ctx: &OperationContext, path: &str, args: OpStat) -> Result<RpStat> {
        self.inner.stat(ctx, path, args).await
    }

    fn read(&self, ctx: &OperationContext, path: &str, args: OpRead) -> Result<oio::Reader> {
        self.inner.read(ctx, path, args)
    }

    fn write(&self, ctx: &OperationContext, path: &str, args: OpWrite) -> Result<FaultWriter> {
        self.fs
            .object_create(&abs(&self.root, path))
            .map_err(to_opendal)?;
        Ok(FaultWriter {
            inner: self.inner.write(ctx, path, args)?,
            fs: self.fs.clone(),
        })
    }

    fn delete(&self, ctx: &OperationContext) -> Result<FaultDeleter> {
        Ok(FaultDeleter {
            inner: self.inner.delete(ctx)?,
            fs: self.fs.clone(),
            root: self.root.clone(),
        })
    }

    fn list(&self, ctx: &OperationContext, path: &str, args: OpList) -> Result<oio::Lister> {
        self.inner.list(ctx, path, args)
    }

    fn copy(
        &self,
        _ctx: &OperationContext,
        _from: &str,
        _to: &str,
        _args: OpCopy,
    ) -> Result<oio::Copier> {
        Err(Error::new(
            ErrorKind::Unsupported,
            "copy is not modelled by the fault-injecting layer",
        ))
    }

    async fn rename(
        &self,
        _ctx: &OperationContext,
        _from: &str,
        _to: &str,
        _args: OpRename,
    ) -> Result<RpRename> {
        Err(Error::new(
            ErrorKind::Unsupported,
            "rename through the operator is not modelled by the fault-injecting layer",
        ))
    }

    async fn presign(
        &self,
        ctx: &OperationContext,
        path: &str,
        args: OpPresign,
    ) -> Result<RpPresign> {
        self.inner.presign(ctx, path, args).await
    }
}

/// An object write: each buffer is admitted, and the commit (sync and rename) holds its
/// ticket so a cut waits for it.
pub(crate) struct FaultWriter {
    inner: oio::Writer,
    fs: FaultFs,
}

impl oio::Write for FaultWriter {
    async fn write(&mut self, bs: Buffer) -> Result<()> {
        self.fs.object_write().map_err(to_opendal)?;
        self.inner.write(bs).await
    }

    async fn close(&mut self) -> Result<Metadata> {
        let _ticket = self.fs.object_commit().map_err(to_opendal)?;
        self.inner.close().await
    }

    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}

/// Deletes: the durable contents of each object are kept until its directory is synced.
pub(crate) struct FaultDeleter {
    inner: oio::Deleter,
    fs: FaultFs,
    root: PathBuf,
}

impl oio::Delete for FaultDeleter {
    async fn delete(&mut self, path: &str, args: OpDelete) -> Result<()> {
        let _ticket = self
            .fs
            .object_remove(&abs(&self.root, path))
            .map_err(to_opendal)?;
        self.inner.delete(path, args).await
    }

    async fn close(&mut self) -> Result<()> {
        self.inner.close().await
    }
}

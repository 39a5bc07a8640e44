; Tiled matmul on tiny-npu tile 0: C (32x32 f32) = A (32x64 bf16) . B^T,
; B stored 32x64 (n x k, bf16). K is split in two chunks of 32; the two DMA
; channels load chunk 0 and chunk 1 into separate SRAM buffers (double
; buffering) while the tensor unit waits only for the chunk it needs.
.smx version=1 devices=1
.hw {"clock_hz":1e9,"clusters":2,"tiles_per_cluster":2,"tile":{"sram_bytes":262144,"semaphores":16,"issue_cycles":2.0,"tensor":{"shape":[16,16,16],"rate":{"bf16":4e11,"f32":1e11,"f8e4m3fn":8e11,"mxfp4":1.6e12,"mxfp8e4m3":8e11}},"vector":{"width":16,"dtypes":["f32","bf16"],"rate":1.0,"transcendental_cycles":4.0},"dma":{"engines":2,"bandwidth":3.2e10}},"cluster":{"l2_bytes":4194304,"dma":{"engines":1,"bandwidth":6.4e10}},"hbm":{"bytes":1073741824,"bandwidth":1e11},"links":{"count":2,"bandwidth":2.5e10,"latency":1e-6}}
.region name=a kind=input offset=0x0 bytes=4096 dtype=bf16 shape=32,64
.region name=b kind=weight offset=0x1000 bytes=4096 dtype=bf16 shape=32,64
.region name=c kind=output offset=0x2000 bytes=4096 dtype=f32 shape=32,32
; SRAM: chunk0 A 0x0, B 0x800; chunk1 A 0x1000, B 0x1800; C 0x2000
t0.dma0   dma src=hbm[0x0] dst=sram.0[0x0] sdt=bf16 ddt=bf16 rows=32 cols=32 sstride=64 dstride=32
t0.dma0   dma src=hbm[0x1000] dst=sram.0[0x800] sdt=bf16 ddt=bf16 rows=32 cols=32 sstride=64 dstride=32
t0.dma0   signal sem=0.0 n=1
t0.dma1   dma src=hbm[0x40] dst=sram.0[0x1000] sdt=bf16 ddt=bf16 rows=32 cols=32 sstride=64 dstride=32
t0.dma1   dma src=hbm[0x1040] dst=sram.0[0x1800] sdt=bf16 ddt=bf16 rows=32 cols=32 sstride=64 dstride=32
t0.dma1   signal sem=0.1 n=1
t0.tensor wait sem=0.0 n=1
t0.tensor matmul dt=bf16 m=32 n=32 k=32 a=0x0 b=0x800 c=0x2000 acc=0
t0.tensor wait sem=0.1 n=1
t0.tensor matmul dt=bf16 m=32 n=32 k=32 a=0x1000 b=0x1800 c=0x2000 acc=1
t0.tensor signal sem=0.2 n=1
t0.dma0   wait sem=0.2 n=1
t0.dma0   dma src=sram.0[0x2000] dst=hbm[0x2000] sdt=f32 ddt=f32 rows=32 cols=32 sstride=32 dstride=32

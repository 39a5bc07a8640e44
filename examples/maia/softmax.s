; Row softmax of x (8x64 f32) on tiny-npu tile 1, in the vector unit:
; m = rowmax(x); e = exp(x - m); y = e / rowsum(e).
.smx version=1 devices=1
.hw {"clock_hz":1e9,"clusters":2,"tiles_per_cluster":2,"tile":{"sram_bytes":262144,"semaphores":16,"issue_cycles":2.0,"tensor":{"shape":[16,16,16],"rate":{"bf16":4e11,"f32":1e11,"f8e4m3fn":8e11,"mxfp4":1.6e12,"mxfp8e4m3":8e11}},"vector":{"width":16,"dtypes":["f32","bf16"],"rate":1.0,"transcendental_cycles":4.0},"dma":{"engines":2,"bandwidth":3.2e10}},"cluster":{"l2_bytes":4194304,"dma":{"engines":1,"bandwidth":6.4e10}},"hbm":{"bytes":1073741824,"bandwidth":1e11},"links":{"count":2,"bandwidth":2.5e10,"latency":1e-6}}
.region name=x kind=input offset=0x0 bytes=2048 dtype=f32 shape=8,64
.region name=y kind=output offset=0x800 bytes=2048 dtype=f32 shape=8,64
; SRAM: x 0x0, row max 0x800, row sum 0x820
t1.dma0   dma src=hbm[0x0] dst=sram.1[0x0] sdt=f32 ddt=f32 rows=8 cols=64 sstride=64 dstride=64
t1.dma0   signal sem=1.0 n=1
t1.vector wait sem=1.0 n=1
t1.vector reduce.max dt=f32 rows=8 cols=64 dst=0x800 src=0x0
t1.vector sub dt=f32 rows=8 cols=64 dst=0x0 a=0x0 b=row:0x800
t1.vector exp dt=f32 rows=8 cols=64 dst=0x0 a=0x0
t1.vector reduce.sum dt=f32 rows=8 cols=64 dst=0x820 src=0x0
t1.vector div dt=f32 rows=8 cols=64 dst=0x0 a=0x0 b=row:0x820
t1.vector signal sem=1.1 n=1
t1.dma0   wait sem=1.1 n=1
t1.dma0   dma src=sram.1[0x0] dst=hbm[0x800] sdt=f32 ddt=f32 rows=8 cols=64 sstride=64 dstride=64

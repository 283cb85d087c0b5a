# bench/gpu_torch.py — PyTorch's Inception v3 on the same GPU, the rows gpu_bench prints (one JSON
# line each), for bench/gpu_table.py: eval, channels_last, cuDNN benchmark mode, random weights;
# fp32 (TF32 off), tf32, fp16 and bf16 (the model converted to the type, as ctnet converts its
# weights once; input converted on the device, logits returned as float); batch 1, 32, 128, 256;
#   device: input already on the device, the pass replayed as a CUDA graph (PyTorch's fastest);
#   host copies: pinned host input -> device, eager pass, logits -> host (what ctnet's forward does).
# Host wall-clock per pass with a synchronisation, median, as gpu_bench times ctnet.
#   python3 bench/gpu_torch.py [1,32,128,256]   (env TORCH_ROW_S: seconds per row, default 0.5)
import json, os, sys, time
import torch, torchvision

batches = [int(b) for b in (sys.argv[1] if len(sys.argv) > 1 else "1,32,128,256").split(",")]
row_s = float(os.environ.get("TORCH_ROW_S", "0.5"))
torch.backends.cudnn.benchmark = True
base = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=True).eval().cuda()
base = base.to(memory_format=torch.channels_last)
print(json.dumps({"torch": torch.__version__, "cudnn": torch.backends.cudnn.version(),
                  "device": torch.cuda.get_device_name()}), flush=True)


def timed(fn, iters=30):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    ms, t0 = [], time.perf_counter()
    while len(ms) < iters and (len(ms) < 3 or time.perf_counter() - t0 < row_s):
        a = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ms.append((time.perf_counter() - a) * 1e3)
    ms.sort()
    return ms[len(ms) // 2], ms[0], len(ms)


for prec in ("bf16", "fp16", "tf32", "fp32"):
    torch.backends.cuda.matmul.allow_tf32 = prec == "tf32"
    torch.backends.cudnn.allow_tf32 = prec == "tf32"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(prec, torch.float32)
    m = base if dtype == torch.float32 else torchvision.models.inception_v3(
        weights=None, aux_logits=True, init_weights=False).eval().cuda().to(memory_format=torch.channels_last)
    if dtype != torch.float32:
        m.load_state_dict(base.state_dict())
        m = m.to(dtype)
    for n in batches:
        try:
            with torch.inference_mode():
                xh = torch.randn(n, 3, 299, 299).pin_memory()
                run = lambda: m(xh.cuda(non_blocking=True).to(dtype).contiguous(memory_format=torch.channels_last)).float().cpu()
                med, mn, k = timed(run)
                print(json.dumps({"engine": "pytorch", "precision": prec, "copies": True, "batch": n, "median_ms": med,
                                  "min_ms": mn, "images_per_s": n * 1e3 / med, "iters": k}), flush=True)
            x = torch.randn(n, 3, 299, 299, device="cuda").contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                for _ in range(3):
                    m(x.to(dtype)).float()
                torch.cuda.synchronize()
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    y = m(x.to(dtype)).float()
                med, mn, k = timed(g.replay)
                del g, y
            print(json.dumps({"engine": "pytorch", "precision": prec, "copies": False, "batch": n, "median_ms": med,
                              "min_ms": mn, "images_per_s": n * 1e3 / med, "iters": k, "graph": True}), flush=True)
        except Exception as e:  # one failed row does not end the table
            print(json.dumps({"engine": "pytorch", "precision": prec, "batch": n, "error": str(e)[:200]}), flush=True)
    del m
    torch.cuda.empty_cache()

# bench/gpu_torch_train.py — PyTorch's Inception v3 training step on the same GPU, the rows
# bench/gpu_train_bench.cpp prints for ctnet (one JSON line each): train mode (batch statistics,
# dropout, the aux head), label-smoothed cross-entropy (0.1) + 0.4 x the aux loss, backward,
# clip_grad_norm_(2.0), RMSprop (eps 1.0, momentum 0.9, weight decay 4e-5), channels_last, cuDNN
# benchmark mode; tf32 (TF32 on, float32 weights) and bf16 (autocast); batch 32 and 128.
# Host wall clock per step with a synchronisation and the loss read back (as ctnet's step), median.
#   python3 bench/gpu_torch_train.py [32,128]   (env TORCH_TRAIN_STEPS, default 10)
import json, os, sys, time
import torch, torchvision

batches = [int(b) for b in (sys.argv[1] if len(sys.argv) > 1 else "32,128").split(",")]
steps = int(os.environ.get("TORCH_TRAIN_STEPS", "10"))
torch.backends.cudnn.benchmark = True
torch.backends.cuda.matmul.allow_tf32 = True
torch.backends.cudnn.allow_tf32 = True
print(json.dumps({"torch": torch.__version__, "cudnn": torch.backends.cudnn.version(),
                  "device": torch.cuda.get_device_name()}), flush=True)
loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
for prec in ("tf32", "bf16"):
    for n in batches:
        try:
            m = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=True).cuda().train()
            m = m.to(memory_format=torch.channels_last)
            opt = torch.optim.RMSprop(m.parameters(), lr=0.045, alpha=0.9, eps=1.0, momentum=0.9, weight_decay=4e-5)
            x = torch.randn(n, 3, 299, 299, device="cuda").contiguous(memory_format=torch.channels_last)
            y = torch.randint(0, 1000, (n,), device="cuda")

            def step():
                opt.zero_grad(set_to_none=True)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=prec == "bf16"):
                    out, aux = m(x)
                    loss = loss_fn(out.float(), y) + 0.4 * loss_fn(aux.float(), y)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(m.parameters(), 2.0)
                opt.step()
                return loss.item()  # the scalar back on the host, as ctnet's progress line

            for _ in range(2):
                step()
            torch.cuda.synchronize()
            ms = []
            for _ in range(steps):
                a = time.perf_counter()
                step()
                torch.cuda.synchronize()
                ms.append((time.perf_counter() - a) * 1e3)
            ms.sort()
            med = ms[len(ms) // 2]
            print(json.dumps({"engine": "pytorch", "precision": prec, "batch": n, "median_ms": med, "min_ms": ms[0],
                              "images_per_s": n * 1e3 / med, "steps": len(ms)}), flush=True)
            del m, opt, x, y
            torch.cuda.empty_cache()
        except Exception as e:  # one failed row does not end the table
            print(json.dumps({"engine": "pytorch", "precision": prec, "batch": n, "error": str(e)[:200]}), flush=True)

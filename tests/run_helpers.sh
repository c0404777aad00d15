# Sourced by the CTest scripts that run u2pl_train (kill_resume.sh, and through mpi_launch.sh
# mpi_abort.sh and mpi_signal.sh): what they share.

# ckpt_iter FILE: the iteration a checkpoint holds (its safetensors metadata `iter`).
ckpt_iter() {
  python3 -c 'import json, struct, sys
f = open(sys.argv[1], "rb")
print(json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))["__metadata__"]["iter"])' "$1"
}

# net_yaml: the `net` section of their configs, a ResNet-18 at width/16 for 3 classes.
net_yaml() {
  cat <<'YAML'
net:
  num_classes: 3
  ema_decay: 0.99
  encoder:
    type: u2pl.models.resnet.resnet18
    kwargs: {replace_stride_with_dilation: [False, False, True], width_divisor: 16}
  decoder: {type: u2pl.models.decoder.dec_deeplabv3_plus, kwargs: {inner_planes: 16, dilations: [2, 4, 6]}}
YAML
}

"""Networks: binarized networks on MRAM arrays, MLPs and small CNNs, the four CIFAR
architectures of the memory-faults paper, WideResNet, and weights in stored results."""

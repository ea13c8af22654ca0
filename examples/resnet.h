/*
 * resnet.h - a small ResNet built from a user-written residual block (header only,
 * not part of the library): fashion_cnn.c's --model resnet, and test/test_resnet.c,
 * which checks it against PyTorch (scripts/gen_resnet_fixtures.py holds the twin).
 *
 * BasicBlock(in, out, stride), as torchvision's: relu(bn2(conv2(relu(bn1(conv1(x))))) + s(x)),
 * conv1 3x3 with the stride, conv2 3x3, both without bias; s is the identity, or, when the
 * stride or the channels change, a child "shortcut" = Sequential(Conv2d 1x1 with the stride
 * and no bias, BatchNorm2d).  Parameter names are PyTorch's: "conv1.weight", "bn1.running_mean",
 * "shortcut.0.weight", ...
 *
 * resnet_new(width, classes): Sequential(Conv2d(1, W, 3, padding=1, bias=False), BatchNorm2d(W),
 * ReLU, BasicBlock(W, W, 1), BasicBlock(W, 2W, 2), BasicBlock(2W, 4W, 2), AdaptiveAvgPool2d(1),
 * Flatten, Linear(4W, classes)): on 28x28 inputs 28 -> 14 -> 7, then one value per channel.
 */
#ifndef AGRAD_EXAMPLES_RESNET_H
#define AGRAD_EXAMPLES_RESNET_H

#include <agrad/agrad.h>

/* y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); NULL x gives NULL. */
static ag_tensor *basic_block_forward(ag_module *m, ag_tensor *x) {
    ag_module *shortcut = ag_module_get_child(m, "shortcut");
    ag_tensor *h = ag_module_forward(ag_module_get_child(m, "conv1"), x);
    h = ag_relu(ag_module_forward(ag_module_get_child(m, "bn1"), h));
    h = ag_module_forward(ag_module_get_child(m, "bn2"), ag_module_forward(ag_module_get_child(m, "conv2"), h));
    return ag_relu(ag_add(h, shortcut ? ag_module_forward(shortcut, x) : x));
}

static const ag_module_type basic_block_type = {"BasicBlock", basic_block_forward, NULL, NULL};

/* A new BasicBlock(in, out, stride) (caller owns it), or NULL with the error recorded. */
static ag_module *basic_block_new(int64_t in, int64_t out, int64_t stride) {
    ag_conv_opts c3 = {.stride = {stride, stride}, .padding = {1, 1}}, c1 = {.stride = {stride, stride}};
    ag_module *m = ag_module_new(&basic_block_type, NULL);
    ag_status st = m ? AG_OK : ag_last_status();
    if (!st) st = ag_module_add_child(m, "conv1", ag_nn_conv2d(in, out, 3, 3, &c3, false));
    if (!st) st = ag_module_add_child(m, "bn1", ag_nn_batch_norm2d(out, 1e-5, 0.1, true, true));
    if (!st) st = ag_module_add_child(m, "conv2", ag_nn_conv2d(out, out, 3, 3, &(ag_conv_opts){.padding = {1, 1}}, false));
    if (!st) st = ag_module_add_child(m, "bn2", ag_nn_batch_norm2d(out, 1e-5, 0.1, true, true));
    if (!st && (stride != 1 || in != out))
        st = ag_module_add_child(m, "shortcut", AG_SEQUENTIAL(ag_nn_conv2d(in, out, 1, 1, &c1, false),
                                                              ag_nn_batch_norm2d(out, 1e-5, 0.1, true, true)));
    if (st) ag_module_free(m);
    return st ? NULL : m;
}

/* The small ResNet above (caller owns it), or NULL with the error recorded. */
static ag_module *resnet_new(int64_t width, int64_t classes) {
    return AG_SEQUENTIAL(ag_nn_conv2d(1, width, 3, 3, &(ag_conv_opts){.padding = {1, 1}}, false),
                         ag_nn_batch_norm2d(width, 1e-5, 0.1, true, true), ag_nn_relu(),
                         basic_block_new(width, width, 1), basic_block_new(width, 2 * width, 2),
                         basic_block_new(2 * width, 4 * width, 2), ag_nn_adaptive_avg_pool2d(1, 1), ag_nn_flatten(1, -1),
                         ag_nn_linear(4 * width, classes, true));
}

#endif

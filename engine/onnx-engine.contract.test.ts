import { describeEngineContract } from './engine.contract';

// The ONNX engine as the workers make it (CPU, default settings).
describeEngineContract('onnx (cpu)', { kind: 'onnx' });

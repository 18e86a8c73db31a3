import { describeEngineContract } from './engine.contract';
import { ONNX_CONTRACT_FIXTURE } from './testing/contract-fixtures';
import { describeTokenEngineContract } from './token-engine.contract';

// The ONNX engine as the workers make it (CPU, default settings): the prompt-level contract every engine passes
// (Sophia's micro model with its tokenizer's vocabulary), and the token-level one of its TokenEngine surface.
const { options, ...models } = ONNX_CONTRACT_FIXTURE;
describeEngineContract('onnx (cpu)', options, () => models);
describeTokenEngineContract('onnx (cpu)', { kind: 'onnx' });

/**
 * An example's image as pixels or as PNG bytes, whichever way it is stored (`ExampleImage`): the tiny world's are
 * pixels already; a real dataset's are its files' bytes, decoded here when a prompt or a judge request needs them.
 */
import { decodeImage } from '../datasets/images';
import { decodePng, encodePng } from './render';
import type { EncodedImage, ExampleImage, Image } from './types';

export function isEncoded(image: ExampleImage): image is EncodedImage {
  return 'bytes' in image;
}

/** RGB pixels of the image (decoded from its bytes when it is encoded). */
export function pixelsOf(image: ExampleImage): Image {
  if (!isEncoded(image)) return image;
  if (image.mime === 'image/png') return decodePng(image.bytes);
  const { width, height, rgba } = decodeImage(image.bytes, 'jpeg');
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    rgb[i * 3] = rgba[i * 4]!;
    rgb[i * 3 + 1] = rgba[i * 4 + 1]!;
    rgb[i * 3 + 2] = rgba[i * 4 + 2]!;
  }
  return { width, height, rgb };
}

/**
 * The image as a file a person or a judge model can look at: pixels as PNG, each pixel drawn `scale` × `scale` (the
 * tiny world's 16 px images are too small to see); an encoded image as its own bytes (real images need no upscaling).
 */
export function fileOf(image: ExampleImage, scale = 1): { bytes: Uint8Array; mime: 'image/png' | 'image/jpeg' } {
  return isEncoded(image) ? { bytes: image.bytes, mime: image.mime } : { bytes: encodePng(image, scale), mime: 'image/png' };
}
